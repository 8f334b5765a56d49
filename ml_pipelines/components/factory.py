"""build_pipeline_defs(spec): one spec in, the whole Dagster asset chain out.

raw_data -> validated_data -> features -> trained_model -> evaluation -> model_package
Each asset is a thin wrapper around ml_pipelines.core; checks gate the chain.
"""


import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd

from ml_pipelines import __version__
from ml_pipelines.components import metadata as md
from ml_pipelines.components.execution import RETRY_POLICY, fail_fast_on_bad_input, stage_op_tags, stage_pool
from ml_pipelines.components.monitoring import build_monitoring_defs
from ml_pipelines.core.evaluation import Champion, Evaluation, decide_gate, evaluate
from ml_pipelines.core.features import FeatureSet, build_feature_set, check_required_columns
from ml_pipelines.core.hashing import frame_hash
from ml_pipelines.core.model_card import publish_card
from ml_pipelines.core.model_io import save_model
from ml_pipelines.core.models import expand_candidates
from ml_pipelines.core.monitoring import PROFILE_FILE, reference_profile
from ml_pipelines.core.packaging import save_bentoml_model
from ml_pipelines.core.plots import evaluation_plots
from ml_pipelines.core.registry import ModelRegistry, Trigger
from ml_pipelines.core.selection import SelectionResult, select_model
from ml_pipelines.core.sources import coerce_declared_types, describe_source, load_source
from ml_pipelines.core.validation import (
    ResolvedSchema,
    ValidatedData,
    resolve_schema,
    row_failures,
    run_suite,
)
from ml_pipelines.resources import BentoStoreResource, RegistryResource, WorkdirResource
from ml_pipelines.serving.bento import build_bento, export_bento
from ml_pipelines.serving.runtime import RECORD_FILE
from ml_pipelines.settings import Settings
from ml_pipelines.spec import PipelineSpec, trusted_roots

STAGES = ("raw_data", "validated_data", "features", "trained_model", "evaluation", "model_package")


def _reference_schema(registry: ModelRegistry, pipeline: str) -> tuple[ResolvedSchema | None, str | None]:
    """The schema the champion was trained under: the reference for inferred rules."""
    champion = registry.get_alias(pipeline, "champion")
    if champion is None:
        return None, None
    schema = registry.get_version(pipeline, champion).extra.get("schema")
    return (ResolvedSchema.from_dict(schema) if schema else None), champion


def _resolved_schema(spec: PipelineSpec, frame: pd.DataFrame, registry: ModelRegistry) -> tuple[ResolvedSchema, str | None]:
    reference, champion = _reference_schema(registry, spec.name)
    categorical = (spec.target,) if spec.task == "classification" else ()
    return resolve_schema(spec.data_schema, frame, reference=reference, categorical_columns=categorical), champion


def _trigger(context: dg.AssetExecutionContext) -> Trigger:
    tags = context.run.tags
    if "dagster/sensor_name" in tags:
        return Trigger(context.run_id, "sensor", tags["dagster/sensor_name"])
    if "dagster/schedule_name" in tags:
        return Trigger(context.run_id, "schedule", tags["dagster/schedule_name"])
    return Trigger(context.run_id, tags.get("ml_pipelines/trigger", "manual"))


def build_pipeline_defs(spec: PipelineSpec, *, base_dir: Path | None = None) -> dg.Definitions:
    """All Dagster definitions for one pipeline spec. Reads no data."""
    name = spec.name
    key = {stage: dg.AssetKey([name, stage]) for stage in STAGES}
    source_text = describe_source(spec.source)
    code_version = f"{__version__}-{spec.spec_hash()}"
    owners = list(spec.owners)
    description = spec.description or f"ML pipeline {name}"
    partitions_def = (
        dg.DailyPartitionsDefinition(
            start_date=spec.source.partitions.start_date.isoformat(),
            end_date=spec.source.partitions.end_date.isoformat() if spec.source.partitions.end_date else None,
        )
        if spec.source.partitions
        else None
    )
    frameworks = {m.framework for m in spec.models}
    common = dict(group_name=name, owners=owners, code_version=code_version)

    def stage_settings(asset: str, stage: str) -> dict:
        """What every chain asset shares: group/owners/code version, its stage tag,
        its Kubernetes step-pod resources and its concurrency pool."""
        return dict(
            tags={"stage": stage, "pipeline": name},
            op_tags=stage_op_tags(spec, asset),
            pool=stage_pool(spec, asset),
            **common,
        )

    # ------------------------------------------------------------ ingestion

    blocking = spec.data_schema.on_failure == "block"
    check_description = (
        "The raw data meets the Great Expectations suite built from the spec's schema "
        f"(on failure: {spec.data_schema.on_failure})."
    )

    def suite_result(frame: pd.DataFrame, registry: RegistryResource, workdir: WorkdirResource, partition=None):
        schema, champion = _resolved_schema(spec, frame, registry.registry())
        suite_name = f"{name}_raw_data" + (f"_{partition}" if partition else "")
        report = run_suite(frame, schema, suite_name=suite_name, docs_dir=workdir.path(name, "data_docs"))
        return dg.AssetCheckResult(
            check_name="matches_expectation_suite",
            passed=report.success,
            severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
            description=None if report.success else "; ".join(report.summary_lines())[:1000],
            metadata=md.validation_metadata(report, champion),
        )

    # A partitioned raw_data runs the suite inside its own step (a check spec), so each
    # run validates exactly its partition: a separate check would load every partition.
    @dg.asset(
        key=key["raw_data"],
        description=f"{description}\n\nData as ingested from {source_text}.",
        kinds={"pandas"},
        partitions_def=partitions_def,
        check_specs=(
            [dg.AssetCheckSpec("matches_expectation_suite", asset=key["raw_data"], blocking=blocking,
                               description=check_description)]
            if partitions_def
            else None
        ),
        **stage_settings("raw_data", "ingestion"),
    )
    @fail_fast_on_bad_input
    def raw_data(context: dg.AssetExecutionContext, registry: RegistryResource, workdir: WorkdirResource):
        partition = context.partition_key if partitions_def else None
        loaded = load_source(spec.source, base_dir=base_dir, env=Settings.from_env().variables, partition_key=partition)
        frame = coerce_declared_types(loaded.frame, spec.data_schema, loaded.description)
        check_required_columns(frame, spec, loaded.description)
        data_version = frame_hash(frame)
        yield dg.Output(
            frame,
            data_version=dg.DataVersion(data_version),
            metadata={
                "source": loaded.description,
                "files": dg.MetadataValue.json(list(loaded.files)),
                "data_hash": data_version,
                **md.frame_metadata(frame),
            },
        )
        if partitions_def:
            yield suite_result(frame, registry, workdir, partition)

    @dg.asset_check(
        asset=key["raw_data"], name="matches_expectation_suite", blocking=blocking, description=check_description
    )
    def matches_expectation_suite(
        raw_data: pd.DataFrame, registry: RegistryResource, workdir: WorkdirResource
    ) -> dg.AssetCheckResult:
        return suite_result(raw_data, registry, workdir)

    @dg.asset(
        key=key["validated_data"],
        ins={"raw_data": dg.AssetIn(key["raw_data"])},
        description=f"{description}\n\n"
        "Rows of raw_data that pass the schema's row-level rules; the resolved rules "
        "and the rows dropped per rule are in the metadata.",
        kinds={"pandas", "great_expectations"},
        partitions_def=partitions_def,
        **stage_settings("validated_data", "validation"),
    )
    @fail_fast_on_bad_input
    def validated_data(
        context: dg.AssetExecutionContext, raw_data: pd.DataFrame, registry: RegistryResource
    ) -> dg.Output[ValidatedData]:
        schema, _ = _resolved_schema(spec, raw_data, registry.registry())
        bad, counts = row_failures(raw_data, schema)
        if spec.data_schema.on_failure == "block" and bad.any():
            raise dg.Failure(
                allow_retries=False,
                description=f"{name}: {int(bad.sum())} rows break the schema and on_failure is block: "
                + ", ".join(f"{rule} on {column}: {n}" for (rule, column), n in counts.items()),
            )
        frame = raw_data.loc[~bad].reset_index(drop=True)
        partition = context.partition_key if partitions_def else None
        value = ValidatedData(frame, schema, int(bad.sum()), (partition,) if partition else ())
        return dg.Output(
            value,
            data_version=dg.DataVersion(frame_hash(frame)),
            metadata={
                "rows_in": len(raw_data),
                "rows_dropped": int(bad.sum()),
                "dropped_by_rule": md.markdown_table(
                    ["rule", "column", "rows"], [[r, c, n] for (r, c), n in counts.items()]
                ),
                "schema_rules": dg.MetadataValue.json(schema.to_dict()),
                **md.frame_metadata(frame),
            },
        )

    # ------------------------------------------------------------ features

    validated_in = dg.AssetIn(
        key["validated_data"], partition_mapping=dg.AllPartitionMapping() if partitions_def else None
    )

    @dg.asset(
        key=key["features"],
        ins={"validated_data": validated_in},
        description=f"{description}\n\n"
        "Train and test frames plus the resolved feature spec. Derived columns and encoders "
        "are fitted inside the model so serving applies the same transform.",
        kinds={"pandas", "sklearn"},
        **stage_settings("features", "features"),
    )
    @fail_fast_on_bad_input
    def features(context: dg.AssetExecutionContext, validated_data) -> dg.Output[FeatureSet]:
        validated = ValidatedData.combine(validated_data)
        feature_set = build_feature_set(spec, validated.frame)
        feature_set = feature_set.with_lineage(
            data_version=frame_hash(validated.frame), schema=validated.schema, partitions=validated.partitions
        )
        return dg.Output(
            feature_set,
            data_version=dg.DataVersion(feature_set.data_version),
            metadata=md.features_metadata(feature_set, key["raw_data"]),
        )

    # ------------------------------------------------------------ training

    @dg.asset(
        key=key["trained_model"],
        ins={"features": dg.AssetIn(key["features"])},
        description=f"{description}\n\n"
        f"The best of {len(spec.models)} candidate model(s) by {spec.selection.cv_folds}-fold "
        f"cross-validated {spec.selection_metric}, refit on the whole training split.",
        kinds={"sklearn", *(["pytorch"] if "torch" in frameworks else [])},
        **stage_settings("trained_model", "training"),
    )
    @fail_fast_on_bad_input
    def trained_model(context: dg.AssetExecutionContext, features: FeatureSet) -> dg.Output[SelectionResult]:
        result = select_model(
            features,
            expand_candidates(list(spec.models)),
            metric=spec.selection_metric,
            cv_folds=spec.selection.cv_folds,
            max_latency_ms=spec.selection.max_latency_ms,
            max_size_mb=spec.selection.max_size_mb,
            seed=spec.features.split.seed,
            log=context.log.info,
        )
        return dg.Output(result, metadata=md.selection_metadata(result))

    # ------------------------------------------------------------ evaluation

    @dg.asset(
        key=key["evaluation"],
        ins={"trained_model": dg.AssetIn(key["trained_model"]), "features": dg.AssetIn(key["features"])},
        description=f"{description}\n\n"
        "Holdout metrics with bootstrap 95% intervals, per-slice metrics, permutation "
        "importance, and the same metrics for the current champion on the same rows.",
        kinds={"sklearn"},
        **stage_settings("evaluation", "evaluation"),
    )
    @fail_fast_on_bad_input
    def evaluation(
        context: dg.AssetExecutionContext,
        trained_model: SelectionResult,
        features: FeatureSet,
        registry: RegistryResource,
        workdir: WorkdirResource,
    ) -> dg.Output[Evaluation]:
        champion = _load_champion(registry.registry(), spec)
        result = evaluate(
            trained_model.model,
            features,
            spec.evaluation_metrics,
            slices=list(spec.evaluation.slices),
            importance_metric=spec.gate_metric,
            bootstrap_samples=spec.evaluation.bootstrap_samples,
            champion=champion,
        )
        result.plots = evaluation_plots(result, spec.task, spec.gate_metric)
        plot_dir = workdir.path(name, "evaluation", context.run_id)
        for plot, png in result.plots.items():
            (plot_dir / f"{plot}.png").write_bytes(png)
        return dg.Output(result, metadata=md.evaluation_metadata(result, spec.gate_metric))

    @dg.asset_check(
        asset=key["evaluation"],
        name="beats_champion",
        blocking=True,
        description="Promotion gate: the candidate meets the spec's floor and is no worse than the current "
        "champion by more than max_regression. Packaging runs only when it passes.",
    )
    def beats_champion(evaluation: Evaluation) -> dg.AssetCheckResult:
        decision = _gate(spec, evaluation)
        return dg.AssetCheckResult(
            passed=decision.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=decision.explain(),
            metadata=md.gate_metadata(decision),
        )

    # ------------------------------------------------------------ packaging

    @dg.asset(
        key=key["model_package"],
        ins={
            "trained_model": dg.AssetIn(key["trained_model"]),
            "evaluation": dg.AssetIn(key["evaluation"]),
            "features": dg.AssetIn(key["features"]),
        },
        description=f"{description}\n\n"
        "A registry version with full lineage, the same model in the BentoML store, "
        "promoted to champion when the gate passes.",
        kinds={"bentoml"},
        **stage_settings("model_package", "packaging"),
    )
    @fail_fast_on_bad_input
    def model_package(
        context: dg.AssetExecutionContext,
        trained_model: SelectionResult,
        evaluation: Evaluation,
        features: FeatureSet,
        registry: RegistryResource,
        bento_store: BentoStoreResource,
    ) -> dg.Output[dict]:
        decision = _gate(spec, evaluation)
        if not decision.passed:
            # the blocking check normally stops the run first; this covers a package-only run
            raise dg.Failure(f"{name}: the promotion gate did not pass: {decision.explain()}", allow_retries=False)
        reg = registry.registry()
        best = trained_model.best
        with tempfile.TemporaryDirectory(prefix=f"{name}-package-") as tmp:
            artifact_dir = Path(tmp)
            save_model(trained_model.model, artifact_dir)
            profile = reference_profile(trained_model.model, features)
            (artifact_dir / PROFILE_FILE).write_bytes(profile.to_bytes())
            for plot, png in evaluation.plots.items():
                (artifact_dir / "plots").mkdir(exist_ok=True)
                (artifact_dir / "plots" / f"{plot}.png").write_bytes(png)
            version = reg.new_version_id()
            record = reg.register(
                name,
                artifact_dir,
                version=version,
                data_version=features.data_version,
                code_version=code_version,
                spec_hash=spec.spec_hash(),
                model_name=best.model_name,
                framework=best.framework,
                params=md.jsonable(best.params),
                metrics=evaluation.metrics,
                trigger=_trigger(context),
                partitions=list(features.partitions),
                task=spec.task,
                target=spec.target,
                classes=md.jsonable(list(trained_model.model.classes_)) if spec.task == "classification" else None,
                features=features.record(),
                extra={
                    "schema": features.schema.to_dict() if features.schema else None,
                    "gate": md.jsonable(decision.__dict__),
                    "intervals": {k: [v.low, v.high] for k, v in evaluation.intervals.items()},
                    "selection": {"metric": trained_model.metric, "cv_mean": best.mean, "cv_std": best.std},
                    "serving": spec.serving.model_dump(),
                    "trusted_roots": list(trusted_roots(spec)),
                    "description": spec.description,
                    "source": source_text,
                    "slices": [md.jsonable(s.__dict__) for s in evaluation.slices],
                },
            )
            (artifact_dir / RECORD_FILE).write_bytes(record.to_json())  # lets a bento serve without the registry
            bento = save_bentoml_model(
                name,
                version,
                artifact_dir,
                bentoml_home=bento_store.path,
                labels={"pipeline": name, "framework": best.framework, "model": best.model_name},
                metadata={
                    "metrics": evaluation.metrics,
                    "data_version": features.data_version,
                    "spec_hash": spec.spec_hash(),
                    "code_version": code_version,
                    "libraries": record.libraries,
                    "run_id": context.run_id,
                },
            )
        bento_tag = build_bento(name, version, bentoml_home=bento_store.path)
        export_store = bento_store.export_store()
        if export_store is not None:
            export_store.put(f"{name}/{version}.bento", export_bento(bento_tag, bentoml_home=bento_store.path))
        move = reg.promote(name, version, actor=f"run {context.run_id}", reason=decision.explain())
        context.log.info(f"{name} {version} is champion (previous: {move.previous})")
        card = publish_card(reg, name, version)
        return dg.Output(
            {"version": version, "bento_tag": bento.tag, "bento_path": bento.path, "bento": bento_tag},
            metadata={
                "version": version,
                "bentoml_tag": bento.tag,
                "bento": bento_tag,
                "bentoml_path": dg.MetadataValue.path(bento.path),
                "previous_champion": move.previous or "none",
                "model_card": md.uri_value(card["html"]),
                "model_card_markdown": md.uri_value(card["md"]),
                "registry": reg.store.uri(f"{name}/versions/{version}/record.json"),
                **{f"metric/{k}": v for k, v in evaluation.metrics.items()},
            },
        )

    assets = [raw_data, validated_data, features, trained_model, evaluation, model_package]
    retrain_selection = dg.AssetSelection.assets(*[key[s] for s in STAGES])
    if partitions_def is not None:
        retrain_selection = dg.AssetSelection.assets(*[key[s] for s in STAGES[2:]])
    jobs = [
        dg.define_asset_job(
            f"{name}_retrain_job",
            selection=retrain_selection,
            description=f"Re-materialize {name} from {'features' if partitions_def else 'raw_data'} to model_package; "
            "the promotion gate decides whether the new version becomes champion.",
            tags={"pipeline": name},
            op_retry_policy=RETRY_POLICY,
        )
    ]
    if partitions_def is not None:
        jobs.append(
            dg.define_asset_job(
                f"{name}_ingest_job",
                selection=dg.AssetSelection.assets(key["raw_data"], key["validated_data"]),
                partitions_def=partitions_def,
                tags={"pipeline": name},
                op_retry_policy=RETRY_POLICY,
            )
        )
    definitions = dg.Definitions(
        assets=assets,
        asset_checks=[beats_champion] if partitions_def else [matches_expectation_suite, beats_champion],
        jobs=jobs,
    )
    if spec.monitoring.production_data is None:
        return definitions
    monitoring = build_monitoring_defs(spec, retrain_job=jobs[0], base_dir=base_dir, common=common)
    return dg.Definitions.merge(definitions, monitoring)


def _gate(spec: PipelineSpec, evaluation: Evaluation):
    metric = spec.gate_metric
    champion_value = (evaluation.champion_metrics or {}).get(metric)
    return decide_gate(
        metric,
        evaluation.metrics[metric],
        minimum=spec.evaluation.gate.min,
        max_regression=spec.evaluation.gate.max_regression,
        champion_version=evaluation.champion_version,
        champion=champion_value,
    )


def _load_champion(registry: ModelRegistry, spec: PipelineSpec) -> Champion | None:
    version = registry.get_alias(spec.name, "champion")
    if version is None:
        return None
    record = registry.get_version(spec.name, version)
    return Champion(version, registry.load_model(spec.name, version, trusted_roots(spec)), record.metrics)

