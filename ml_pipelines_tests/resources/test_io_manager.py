"""resources/io_manager.py: one IO manager over the ObjectStore, on local files and on S3
(moto's server, through the real boto3 client): DataFrames land as Parquet under the
pickle IO managers' key layout, partitions load as a dict, typed outputs come back whole,
op outputs work, and a write that fails leaves the stored object as it was."""

import pickle

import dagster as dg
import pandas as pd
import pytest

from ml_pipelines.core import frame_codec
from ml_pipelines.core.storage import LocalObjectStore, S3ObjectStore
from ml_pipelines.core.validation import ResolvedSchema, ValidatedData
from ml_pipelines.resources import LocalFrameIOManager, S3FrameIOManager

DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-01-03")


def _day(partition: str) -> pd.DataFrame:
    return pd.DataFrame({"day": [partition] * 3, "x": [1.5, 2.5, float(len(partition))], "n": [1, 2, 3]})


@dg.asset(partitions_def=DAYS, key_prefix="pipe")
def rows(context: dg.AssetExecutionContext) -> pd.DataFrame:
    return _day(context.partition_key)


@dg.asset(partitions_def=DAYS, key_prefix="pipe", ins={"rows": dg.AssetIn(["pipe", "rows"])})
def checked(rows: pd.DataFrame) -> ValidatedData:
    return ValidatedData(rows, ResolvedSchema(rules=()), dropped_rows=0, partitions=(rows["day"][0],))


@dg.asset(key_prefix="pipe", ins={"checked": dg.AssetIn(["pipe", "checked"], partition_mapping=dg.AllPartitionMapping())})
def combined(checked: dict[str, ValidatedData]) -> pd.DataFrame:
    return ValidatedData.combine(checked).frame


@dg.op
def make() -> dict:
    return {"frame": _day("op"), "note": "op output"}


@dg.op
def use(value: dict) -> int:
    return len(value["frame"])


@dg.job
def op_job():
    use(make())


def _materialize(io_manager) -> None:
    with dg.instance_for_test() as instance:
        for day in ("2026-01-01", "2026-01-02"):
            result = dg.materialize([rows, checked], partition_key=day, resources={"io_manager": io_manager},
                                    instance=instance)
            assert result.success
        result = dg.materialize([rows, checked, combined], selection=[combined], resources={"io_manager": io_manager},
                                instance=instance)
        assert result.success
        assert op_job.execute_in_process(resources={"io_manager": io_manager}, instance=instance).output_for_node("use") == 3


def _check_store(store) -> None:
    """What the run left in the store: the keys the pickle IO managers used, Parquet inside."""
    keys = [k for k in store.list("") if not k.startswith("storage/")]
    assert keys == [
        "pipe/checked/2026-01-01", "pipe/checked/2026-01-02", "pipe/combined",
        "pipe/rows/2026-01-01", "pipe/rows/2026-01-02",
    ]
    for key in keys:
        assert store.get(key).startswith(frame_codec.MAGIC)
    combined_frame = frame_codec.loads(store.get("pipe/combined"))
    expected = pd.concat([_day("2026-01-01"), _day("2026-01-02")], ignore_index=True)
    pd.testing.assert_frame_equal(combined_frame, expected, check_exact=True)
    validated = frame_codec.loads(store.get("pipe/checked/2026-01-02"))
    assert isinstance(validated, ValidatedData) and validated.partitions == ("2026-01-02",)
    assert any(k.startswith("storage/") and k.endswith("/make/result") for k in store.list("storage/"))


def test_local_outputs_are_parquet_under_the_asset_keys(tmp_path):
    _materialize(LocalFrameIOManager(base_dir=str(tmp_path / "io")))
    _check_store(LocalObjectStore(tmp_path / "io"))


def test_without_base_dir_outputs_go_to_the_instance_storage_folder(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = dg.materialize([rows], partition_key="2026-01-01", resources={"io_manager": LocalFrameIOManager()},
                                instance=instance)
        assert result.success
        (event,) = result.get_asset_materialization_events()
        metadata = event.materialization.metadata
        assert metadata["uri"].value == str(tmp_path / "storage" / "pipe" / "rows" / "2026-01-01")
        assert metadata["stored_bytes"].value == (tmp_path / "storage" / "pipe" / "rows" / "2026-01-01").stat().st_size


def test_s3_outputs_are_parquet_under_the_prefix(s3):
    _materialize(S3FrameIOManager(bucket=s3.name, prefix="/team/io/"))
    assert all(key.startswith("team/io/") for key in s3.keys())
    _check_store(S3ObjectStore(s3.name, "team/io"))


def test_a_failed_write_leaves_the_stored_object_as_it_was(tmp_path):
    io_manager = LocalFrameIOManager(base_dir=str(tmp_path))

    @dg.asset
    def value(context: dg.AssetExecutionContext):
        return {"good": pd.DataFrame({"a": [1.0]})} if context.run.tags.get("ok") else {"bad": lambda: None}

    with dg.instance_for_test() as instance:
        assert dg.materialize([value], resources={"io_manager": io_manager}, instance=instance, tags={"ok": "1"}).success
        with pytest.raises((pickle.PicklingError, AttributeError)):
            dg.materialize([value], resources={"io_manager": io_manager}, instance=instance)
    stored = frame_codec.loads(LocalObjectStore(tmp_path).get("value"))
    pd.testing.assert_frame_equal(stored["good"], pd.DataFrame({"a": [1.0]}))
    assert [p.name for p in tmp_path.iterdir()] == ["value"]  # no temporary file left behind


def test_an_old_pickled_output_still_loads(tmp_path):
    LocalObjectStore(tmp_path).put("pipe/old", pickle.dumps(pd.DataFrame({"a": [1, 2]})))

    @dg.asset(key_prefix="pipe", ins={"old": dg.AssetIn(["pipe", "old"])})
    def newer(old: pd.DataFrame) -> int:
        return int(old["a"].sum())

    old = dg.SourceAsset(["pipe", "old"])
    result = dg.materialize([old, newer], selection=[newer], resources={"io_manager": LocalFrameIOManager(base_dir=str(tmp_path))})
    assert result.output_for_node("pipe__newer") == 3
