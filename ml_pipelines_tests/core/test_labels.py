"""Label joins (core.labels): late, missing, duplicated and unknown ids, conflicting
labels, label delay, and the labelled-batch store on both object stores."""

from __future__ import annotations

import pandas as pd
import pytest

from ml_pipelines.core.errors import SourceError
from ml_pipelines.core.labels import LabelledBatches, join_labels
from ml_pipelines.core.storage import LocalObjectStore


def production(ids, **extra) -> pd.DataFrame:
    return pd.DataFrame({"application_id": ids, "income": [float(i) for i in range(len(ids))], **extra})


def test_rows_with_a_label_get_the_target_and_the_rest_wait():
    prod = production(["a", "b", "c", "d"])
    labels = pd.DataFrame({"application_id": ["a", "c"], "defaulted": [1, 0]})
    joined = join_labels(prod, labels, id_columns=["application_id"], target="defaulted")
    assert joined.frame["application_id"].tolist() == ["a", "c"]
    assert joined.frame["defaulted"].tolist() == [1, 0]
    assert (joined.rows, joined.labelled, joined.missing) == (4, 2, 2)
    assert "income" in joined.frame.columns


def test_a_late_label_is_picked_up_by_the_next_join():
    prod = production(["a", "b"])
    first = join_labels(prod, pd.DataFrame({"application_id": ["a"], "defaulted": [1]}),
                        id_columns=["application_id"], target="defaulted")
    later = join_labels(prod, pd.DataFrame({"application_id": ["a", "b"], "defaulted": [1, 0]}),
                        id_columns=["application_id"], target="defaulted")
    assert (first.labelled, first.missing) == (1, 1)
    assert (later.labelled, later.missing) == (2, 0)


def test_a_duplicated_production_id_keeps_the_last_row():
    prod = production(["a", "a", "b"])
    joined = join_labels(prod, pd.DataFrame({"application_id": ["a", "b"], "defaulted": [1, 0]}),
                         id_columns=["application_id"], target="defaulted")
    assert joined.duplicate_ids == 1 and joined.rows == 2
    assert joined.frame.loc[joined.frame["application_id"] == "a", "income"].tolist() == [1.0]


def test_repeated_labels_count_once_and_conflicting_labels_are_left_out():
    prod = production(["a", "b"])
    labels = pd.DataFrame({"application_id": ["a", "a", "b", "b"], "defaulted": [1, 1, 0, 1]})
    joined = join_labels(prod, labels, id_columns=["application_id"], target="defaulted")
    assert joined.frame["application_id"].tolist() == ["a"]
    assert joined.conflicting_ids == ("b",)
    assert joined.missing == 1


def test_labels_for_unknown_ids_are_ignored_and_counted():
    prod = production(["a"])
    labels = pd.DataFrame({"application_id": ["a", "zz", "yy"], "defaulted": [0, 1, 1]})
    joined = join_labels(prod, labels, id_columns=["application_id"], target="defaulted")
    assert joined.labelled == 1 and joined.unmatched_labels == 2


def test_label_delay_is_the_median_hours_from_production_to_label():
    prod = production(["a", "b", "c"])
    labels = pd.DataFrame({
        "application_id": ["a", "b", "c"], "defaulted": [0, 1, 0],
        "labelled_at": ["2026-03-01T02:00:00Z", "2026-03-01T04:00:00Z", "2026-03-02T00:00:00Z"],
    })
    joined = join_labels(prod, labels, id_columns=["application_id"], target="defaulted",
                         produced_at=pd.Timestamp("2026-03-01T00:00:00Z"))
    assert joined.label_delay_hours == pytest.approx(4.0)
    assert "labelled_at" not in joined.frame.columns


def test_two_id_columns_join_a_request_and_its_record_index():
    prod = pd.DataFrame({"request_id": ["r1", "r1", "r2"], "index": [0, 1, 0], "x": [1.0, 2.0, 3.0]})
    labels = pd.DataFrame({"request_id": ["r1", "r2"], "index": [1, 0], "defaulted": [1, 0]})
    joined = join_labels(prod, labels, id_columns=["request_id", "index"], target="defaulted")
    assert joined.frame["x"].tolist() == [2.0, 3.0]


def test_label_data_without_the_id_or_target_names_the_column():
    with pytest.raises(SourceError, match="application_id"):
        join_labels(production(["a"]), pd.DataFrame({"id": ["a"], "defaulted": [1]}),
                    id_columns=["application_id"], target="defaulted")
    with pytest.raises(SourceError, match="defaulted"):
        join_labels(production(["a"]), pd.DataFrame({"application_id": ["a"], "label": [1]}),
                    id_columns=["application_id"], target="defaulted")


def test_the_store_keeps_batches_in_landing_order_and_refuses_path_names(tmp_path):
    store = LabelledBatches(LocalObjectStore(tmp_path), "credit")
    frame = production(["a", "b"], defaulted=[0, 1])
    store.put("batch-2.csv", frame, landed_at="2026-03-02T00:00:00", updated_at="x", join={})
    store.put("batch-1.csv", frame.head(1), landed_at="2026-03-01T00:00:00", updated_at="x", join={})
    store.put("batch-3.csv", frame.head(0), landed_at="2026-03-03T00:00:00", updated_at="x", join={})
    assert [b.batch for b in store.list()] == ["batch-1.csv", "batch-2.csv"]  # empty batches don't count
    assert [b.batch for b in store.newest(1)] == ["batch-2.csv"]
    assert store.load("batch-2.csv")["application_id"].tolist() == ["a", "b"]
    for bad in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(SourceError, match="not a plain file or partition name"):
            store.load(bad)
