"""What an analyst reads about every asset, through the GraphQL API the Dagster UI
uses, from a real `dagster dev` whose pipelines were materialized first:
descriptions from the spec, owners, kinds, group, the `stage` tag, code and data
versions, column schemas and column lineage, and the gating checks."""

from __future__ import annotations

import time
from typing import Any

import dagster as dg
import pytest

from ml_pipelines import __version__
from ml_pipelines.core.sources import describe_source
from ml_pipelines.spec import PipelineSpec
from ml_pipelines_tests.ui.conftest import LOCATION, AnalystWorld

pytestmark = pytest.mark.timeout(600)

STAGE_TAG = {
    "raw_data": "ingestion",
    "validated_data": "validation",
    "features": "features",
    "trained_model": "training",
    "evaluation": "evaluation",
    "model_package": "packaging",
    "production_data": "monitoring",
    "drift_report": "monitoring",
    "labels": "monitoring",
    "production_performance": "monitoring",
}
# both pipelines here train sklearn models only (a torch candidate adds "pytorch" to trained_model)
KINDS = {
    "raw_data": {"pandas"},
    "validated_data": {"pandas", "great_expectations"},
    "features": {"pandas", "sklearn"},
    "trained_model": {"sklearn"},
    "evaluation": {"sklearn"},
    "model_package": {"bentoml"},
    "production_data": {"pandas"},
    "drift_report": {"pandas"},
    "labels": {"pandas"},
    "production_performance": {"pandas"},
}
# DESIGN section 4, "what it is": words each description must carry
DESIGN_WORDS = {
    "raw_data": ["ingested"],
    "validated_data": ["rows", "pass"],
    "features": ["train", "test", "feature"],
    "trained_model": ["candidate", "cross-validated"],
    "evaluation": ["holdout", "metrics", "95%", "champion"],
    "model_package": ["registry version", "bentoml", "champion"],
    "production_data": ["production"],
    "drift_report": ["drift", "reference profile"],
    "labels": ["ground truth", "joined", "retrain"],
    "production_performance": ["labelled rows", "95%", "label delay", "challenger"],
}
COLUMN_SCHEMA_STAGES = ("raw_data", "validated_data", "features")
# asset -> {check name: blocking}
CHECKS = {
    "raw_data": {"matches_expectation_suite": True},
    "evaluation": {"meets_floor": True, "beats_champion": False},
    "drift_report": {"no_drift": False},
    "production_performance": {"performance_holds": False},
}

METADATA_FIELDS = """
  label
  __typename
  ... on TextMetadataEntry { text }
  ... on IntMetadataEntry { intValue }
  ... on FloatMetadataEntry { floatValue }
  ... on PathMetadataEntry { path }
  ... on MarkdownMetadataEntry { mdStr }
  ... on TableSchemaMetadataEntry { schema { columns { name type } } }
  ... on TableColumnLineageMetadataEntry {
    lineage { columnName columnDeps { assetKey { path } columnName } }
  }
"""

ASSETS_QUERY = """
query Assets($group: AssetGroupSelector!) {
  assetNodes(group: $group) {
    assetKey { path }
    description
    groupName
    kinds
    opVersion
    isPartitioned
    owners { __typename ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
    tags { key value }
    repository { name location { name } }
    assetChecksOrError {
      __typename
      ... on AssetChecks {
        checks { name description blocking executionForLatestMaterialization { status } }
      }
    }
  }
}
"""

ASSET_QUERY = """
query Asset($key: AssetKeyInput!, $partitions: [String!], $partition: String) {
  assetNodes(assetKeys: [$key]) {
    assetKey { path }
    dataVersion(partition: $partition)
    staleStatus(partition: $partition)
    assetMaterializations(partitions: $partitions, limit: 1) {
      runId
      partition
      tags { key value }
      metadataEntries { %s }
    }
  }
}
""" % METADATA_FIELDS


def _owners(node: dict[str, Any]) -> list[str]:
    return [f"team:{o['team']}" if o["__typename"] == "TeamAssetOwner" else o["email"] for o in node["owners"]]


@pytest.fixture(scope="module")
def nodes(analyst_world: AnalystWorld) -> dict[tuple[str, ...], dict[str, Any]]:
    """Every asset node the server lists, by key, read group by group as the UI does."""
    found = {}
    for pipeline in analyst_world.specs:
        group = {"groupName": pipeline, "repositoryName": "__repository__", "repositoryLocationName": LOCATION}
        for node in analyst_world.graphql(ASSETS_QUERY, {"group": group})["assetNodes"]:
            found[tuple(node["assetKey"]["path"])] = node
    return found


@pytest.fixture(scope="module")
def latest(analyst_world: AnalystWorld) -> dict[tuple[str, ...], dict[str, Any]]:
    """Each asset's data version, stale status and latest materialization (of the landed
    batch for the partitioned monitoring assets)."""
    found = {}
    for pipeline in analyst_world.specs:
        for key in analyst_world.asset_keys(pipeline):
            partitioned = analyst_world.defs.resolve_assets_def(key).partitions_def is not None
            variables = {"key": {"path": key.path}}
            if partitioned:
                variables |= {"partitions": [analyst_world.landed_batch], "partition": analyst_world.landed_batch}
            (node,) = analyst_world.graphql(ASSET_QUERY, variables)["assetNodes"]
            found[tuple(key.path)] = node
    return found


def _expected_keys(world: AnalystWorld) -> set[tuple[str, ...]]:
    return {tuple(k.path) for p in world.specs for k in world.asset_keys(p)}


def _materialization(latest, key) -> dict[str, Any]:
    materializations = latest[key]["assetMaterializations"]
    assert materializations, f"{'/'.join(key)} has no materialization"
    return materializations[0]


def _metadata(materialization: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["label"]: entry for entry in materialization["metadataEntries"]}


def _tags(items: list[dict[str, str]]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in items}


def test_every_asset_of_every_pipeline_is_listed(analyst_world: AnalystWorld, nodes):
    expected = _expected_keys(analyst_world)
    # credit_default: the six stages plus production_data, drift_report, labels and production_performance;
    # diabetes: the six stages
    assert len([k for k in expected if k[0] == "credit_default"]) == 10
    assert len([k for k in expected if k[0] == "diabetes_progression"]) == 6
    assert set(nodes) == expected
    for key, node in nodes.items():
        assert node["repository"]["location"]["name"] == LOCATION, key


def test_descriptions_come_from_the_spec(analyst_world: AnalystWorld, nodes):
    graph = analyst_world.defs.resolve_asset_graph()
    for key, node in nodes.items():
        pipeline, stage = key
        spec: PipelineSpec = analyst_world.specs[pipeline]
        description = node["description"] or ""
        assert description.strip(), f"{pipeline}/{stage} has no description"
        # exactly what build_pipeline_defs(spec) wrote
        assert description == graph.get(dg.AssetKey(list(key))).description, f"{pipeline}/{stage}"
        for word in DESIGN_WORDS[stage]:
            assert word.lower() in description.lower(), f"{pipeline}/{stage}: {word!r} not in {description!r}"
        # the asset list shows the start of a description: what the stage does, then the pipeline's sentence
        stage_sentence, pipeline_sentence = description.rsplit("\n\n", 1)
        assert pipeline_sentence == spec.description, f"{pipeline}/{stage}: {description!r}"
        assert spec.description not in stage_sentence, f"{pipeline}/{stage} starts with the pipeline's sentence"
        if stage == "raw_data":
            assert spec.description and spec.description in description
            assert describe_source(spec.source) in description
        elif stage == "trained_model":
            assert f"{len(spec.models)} candidate model" in description
            assert f"{spec.selection.cv_folds}-fold" in description
            assert spec.selection_metric in description
        elif stage == "production_data":
            assert spec.monitoring.production_data.path in description
        elif stage == "drift_report":
            assert f"method {spec.monitoring.drift.method}" in description
            assert f"{spec.monitoring.drift.share:.0%}" in description


def test_owners_kinds_group_and_stage_tag(analyst_world: AnalystWorld, nodes):
    for key, node in nodes.items():
        pipeline, stage = key
        spec = analyst_world.specs[pipeline]
        assert spec.owners, f"the {pipeline} spec names its owners"
        assert _owners(node) == list(spec.owners), f"{pipeline}/{stage}"
        assert set(node["kinds"]) == KINDS[stage], f"{pipeline}/{stage} kinds {node['kinds']}"
        assert node["groupName"] == pipeline
        tags = _tags(node["tags"])
        assert tags.get("stage") == STAGE_TAG[stage], f"{pipeline}/{stage} tags {tags}"
        assert tags.get("pipeline") == pipeline


def test_code_version_is_package_version_plus_spec_hash(analyst_world: AnalystWorld, nodes, latest):
    for key, node in nodes.items():
        spec = analyst_world.specs[key[0]]
        expected = f"{__version__}-{spec.spec_hash()}"
        assert node["opVersion"] == expected, f"{'/'.join(key)} code version {node['opVersion']}"
        tags = _tags(_materialization(latest, key)["tags"])
        assert tags.get("dagster/code_version") == expected, f"{'/'.join(key)} was materialized by other code"
    versions = {n["opVersion"] for n in nodes.values()}
    assert len(versions) == len(analyst_world.specs), "each pipeline has its own code version"


def test_every_materialized_asset_has_a_fresh_data_version(analyst_world: AnalystWorld, nodes, latest):
    for key in nodes:
        node = latest[key]
        materialization = _materialization(latest, key)
        tags = _tags(materialization["tags"])
        data_version = node["dataVersion"]
        assert data_version, f"{'/'.join(key)} has no data version"
        assert tags.get("dagster/data_version") == data_version, f"{'/'.join(key)} tags {tags}"
        assert node["staleStatus"] == "FRESH", f"{'/'.join(key)} is {node['staleStatus']} right after materializing"
        if key[1] in ("production_data", "drift_report", "labels", "production_performance"):
            assert materialization["partition"] == analyst_world.landed_batch


def test_data_versions_are_content_hashes_that_reach_the_registry(analyst_world: AnalystWorld, latest):
    for pipeline in analyst_world.specs:
        raw = _materialization(latest, (pipeline, "raw_data"))
        features = _materialization(latest, (pipeline, "features"))
        for materialization, stage in ((raw, "raw_data"), (features, "features")):
            tags = _tags(materialization["tags"])
            assert tags.get("dagster/data_version_is_user_provided") == "true", f"{pipeline}/{stage}"
            data_hash = _metadata(materialization)["data_hash"]["text"]
            assert tags["dagster/data_version"] == data_hash, f"{pipeline}/{stage}"
        # the version the model_package run registered was trained on exactly these features
        champion = analyst_world.registry.get_alias(pipeline, "champion")
        record = analyst_world.registry.get_version(pipeline, champion)
        assert record.data_version == _tags(features["tags"])["dagster/data_version"]
        package = _materialization(latest, (pipeline, "model_package"))
        assert _metadata(package)["version"]["text"] == champion
        assert record.trigger.run_id == package["runId"]


def test_data_assets_carry_column_schemas(analyst_world: AnalystWorld, latest):
    for pipeline, spec in analyst_world.specs.items():
        schemas = {}
        for stage in COLUMN_SCHEMA_STAGES:
            entry = _metadata(_materialization(latest, (pipeline, stage))).get("dagster/column_schema")
            assert entry is not None, f"{pipeline}/{stage} has no dagster/column_schema"
            assert entry["__typename"] == "TableSchemaMetadataEntry"
            columns = entry["schema"]["columns"]
            assert columns and all(c["name"] and c["type"] for c in columns), f"{pipeline}/{stage}: {columns}"
            schemas[stage] = [c["name"] for c in columns]
        raw = schemas["raw_data"]
        assert spec.target in raw
        assert set(spec.data_schema.columns) <= set(raw), f"{pipeline}: declared columns missing from {raw}"
        assert schemas["validated_data"] == raw, "validation drops rows, never columns"
        assert spec.target not in schemas["features"], f"{pipeline}: the target is not a feature"
        assert len(schemas["features"]) == len(set(schemas["features"]))
    credit = analyst_world.specs["credit_default"]
    features = _metadata(_materialization(latest, ("credit_default", "features")))["dagster/column_schema"]
    typed = {c["name"]: c["type"] for c in features["schema"]["columns"]}
    derived = [d.name for d in credit.features.derived]
    assert typed == {
        **{c: "numeric" for c in [*credit.features.numeric, *derived]},
        **{c: "categorical" for c in credit.features.categorical},
    }


def test_features_carry_column_lineage_back_to_raw_data(analyst_world: AnalystWorld, latest):
    for pipeline in analyst_world.specs:
        raw_columns = {
            c["name"]
            for c in _metadata(_materialization(latest, (pipeline, "raw_data")))["dagster/column_schema"]["schema"][
                "columns"
            ]
        }
        metadata = _metadata(_materialization(latest, (pipeline, "features")))
        lineage = metadata.get("dagster/column_lineage")
        assert lineage is not None, f"{pipeline}/features has no dagster/column_lineage"
        by_column = {
            row["columnName"]: {(tuple(d["assetKey"]["path"]), d["columnName"]) for d in row["columnDeps"]}
            for row in lineage["lineage"]
        }
        feature_columns = {c["name"] for c in metadata["dagster/column_schema"]["schema"]["columns"]}
        assert set(by_column) == feature_columns, f"{pipeline}: lineage {sorted(by_column)}"
        for column, deps in by_column.items():
            assert deps, f"{pipeline}/features.{column} has no upstream column"
            for asset, source in deps:
                assert asset == (pipeline, "raw_data")
                assert source in raw_columns, f"{pipeline}/features.{column} <- {source}, not a raw column"
    credit = analyst_world.specs["credit_default"]
    metadata = _metadata(_materialization(latest, ("credit_default", "features")))
    deps = {
        row["columnName"]: sorted(d["columnName"] for d in row["columnDeps"])
        for row in metadata["dagster/column_lineage"]["lineage"]
    }
    assert deps["income_per_dependent"] == ["dependents", "income"]  # expr: income / (dependents + 1)
    for column in [*credit.features.numeric, *credit.features.categorical]:
        assert deps[column] == [column]


def test_gating_checks_exist_with_descriptions(analyst_world: AnalystWorld, nodes):
    for key, node in nodes.items():
        pipeline, stage = key
        result = node["assetChecksOrError"]
        assert result["__typename"] == "AssetChecks", result
        checks = {c["name"]: c for c in result["checks"]}
        assert {n: c["blocking"] for n, c in checks.items()} == CHECKS.get(stage, {}), f"{pipeline}/{stage}"
        for name, check in checks.items():
            assert (check["description"] or "").strip(), f"{pipeline}/{stage} check {name} has no description"
            # each check ran with the materialization the analyst looks at, and passed
            execution = check["executionForLatestMaterialization"]
            assert execution is not None, f"{pipeline}/{stage} check {name} never ran"
            assert execution["status"] == "SUCCEEDED", f"{pipeline}/{stage} check {name}: {execution}"
    credit = analyst_world.specs["credit_default"]
    descriptions = {
        (key[1], c["name"]): c["description"]
        for key, node in nodes.items()
        if key[0] == "credit_default"
        for c in node["assetChecksOrError"]["checks"]
    }
    assert "Great Expectations" in descriptions[("raw_data", "matches_expectation_suite")]
    assert f"on failure: {credit.data_schema.on_failure}" in descriptions[("raw_data", "matches_expectation_suite")]
    assert "champion" in descriptions[("evaluation", "beats_champion")]
    assert "floor" in descriptions[("evaluation", "meets_floor")]
    assert f"within {credit.monitoring.performance.max_drop}" in descriptions[("production_performance",
                                                                               "performance_holds")]
    assert f"{credit.monitoring.drift.share:.0%}" in descriptions[("drift_report", "no_drift")]


FRESHNESS_QUERY = """
query Freshness($key: AssetKeyInput!) {
  assetNodes(assetKeys: [$key]) {
    internalFreshnessPolicy { __typename ... on TimeWindowFreshnessPolicy { failWindowSeconds } }
    freshnessStatusInfo { freshnessStatus }
  }
}
"""
FRESHNESS_WAIT_S = 120  # the freshness daemon of `dagster dev` evaluates every FRESHNESS_DAEMON_INTERVAL_SECONDS


def test_freshness_policies_from_the_spec_are_evaluated(analyst_world: AnalystWorld):
    """monitoring.freshness {production_data: 24h, model: 30d}: the UI shows each policy, and
    Dagster's freshness daemon judges the freshly materialized assets healthy."""
    freshness = analyst_world.specs["credit_default"].monitoring.freshness
    assert (freshness.production_data, freshness.model) == ("24h", "30d")
    expected = {"production_data": 24 * 3600, "model_package": 30 * 24 * 3600, "drift_report": None}
    deadline = time.monotonic() + FRESHNESS_WAIT_S
    for stage, seconds in expected.items():
        variables = {"key": {"path": ["credit_default", stage]}}
        (node,) = analyst_world.graphql(FRESHNESS_QUERY, variables)["assetNodes"]
        if seconds is None:
            assert node["internalFreshnessPolicy"] is None and node["freshnessStatusInfo"] is None, node
            continue
        assert node["internalFreshnessPolicy"] == {"__typename": "TimeWindowFreshnessPolicy",
                                                   "failWindowSeconds": seconds}, node
        while node["freshnessStatusInfo"]["freshnessStatus"] != "HEALTHY" and time.monotonic() < deadline:
            time.sleep(2)
            (node,) = analyst_world.graphql(FRESHNESS_QUERY, variables)["assetNodes"]
        assert node["freshnessStatusInfo"]["freshnessStatus"] == "HEALTHY", f"credit_default/{stage}: {node}"


# numeric entries Dagster's Plots tab charts across materializations, per stage
NUMERIC = {
    "trained_model": ["cv_roc_auc_mean", "cv_roc_auc_std", "best_cv_score", "best_fit_seconds",
                      "best_latency_ms_per_row", "best_size_mb", "candidates_evaluated", "candidates_dropped"],
    "evaluation": ["metric/roc_auc", "metric/accuracy", "test_rows"],
    "model_package": ["metric/roc_auc"],
    "drift_report": ["share_drifted", "share_threshold"],
    "production_performance": ["metric/roc_auc", "labelled_rows"],
}


def test_metrics_are_numeric_metadata(analyst_world: AnalystWorld, latest):
    for stage, labels in NUMERIC.items():
        metadata = _metadata(_materialization(latest, ("credit_default", stage)))
        for label in labels:
            entry = metadata[label]
            assert entry["__typename"] in ("FloatMetadataEntry", "IntMetadataEntry"), f"{stage} {label}: {entry}"
            value = entry.get("floatValue", entry.get("intValue"))
            assert value is not None and value == value, f"{stage} {label}: {entry}"  # a number, not NaN
    version = analyst_world.registry.get_alias("credit_default", "champion")
    record = analyst_world.registry.get_version("credit_default", version)
    package = _metadata(_materialization(latest, ("credit_default", "model_package")))
    assert package["metric/roc_auc"]["floatValue"] == pytest.approx(record.metrics["roc_auc"])
