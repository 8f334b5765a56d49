"""A partitioned source: daily raw_data/validated_data partitions, features over all of them."""

import dagster as dg

from ml_pipelines.components import build_pipeline_defs
from ml_pipelines.resources import local_resources
from ml_pipelines_tests.helpers import registry_at
from ml_pipelines_tests.specs import make_spec, small_credit_attributes

DAYS = ["2026-01-01", "2026-01-02", "2026-01-03"]


def test_daily_partitions_feed_one_model_that_records_them(platform_root):
    attributes = small_credit_attributes(rows=4500)
    attributes.pop("monitoring")
    attributes["source"]["params"].update({"start_date": "2026-01-01", "days": 3})
    attributes["source"]["partitions"] = {"type": "daily", "start_date": "2026-01-01",
                                          "end_date": "2026-01-04", "column": "applied_on"}
    spec = make_spec(**attributes)
    defs = dg.Definitions.merge(build_pipeline_defs(spec), dg.Definitions(resources=local_resources(platform_root)))
    with dg.instance_for_test() as instance:
        ingest = defs.resolve_job_def("credit_default_ingest_job")
        rows = {}
        for day in DAYS:
            result = ingest.execute_in_process(instance=instance, partition_key=day)
            assert result.success
            event = next(e for e in result.get_asset_materialization_events()
                         if e.asset_key.path[-1] == "raw_data")
            assert event.materialization.partition == day
            rows[day] = event.materialization.metadata["dagster/row_count"].value
        # each partition holds only its own day's rows, and together they are the whole source
        assert all(900 < n < 2100 for n in rows.values()) and sum(rows.values()) == 4500

        train = defs.resolve_job_def("credit_default_retrain_job")
        assert {k.path[-1] for k in train.asset_layer.executable_asset_keys} >= {"features", "model_package"}
        assert "raw_data" not in {k.path[-1] for k in train.asset_layer.executable_asset_keys}
        result = train.execute_in_process(instance=instance)
        assert result.success
        features = next(e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "features")
        assert features.materialization.metadata["partitions"].value == DAYS
    registry = registry_at(platform_root)
    record = registry.get_version("credit_default", registry.get_alias("credit_default", "champion"))
    assert record.partitions == DAYS
    assert record.features.train_rows + record.features.test_rows == 4500
