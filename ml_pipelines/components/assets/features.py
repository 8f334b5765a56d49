"""features: the train/test split and the resolved feature spec."""

from typing import TYPE_CHECKING

import dagster as dg

from ml_pipelines.components import metadata as md
from ml_pipelines.components.policies import fail_fast_on_bad_input
from ml_pipelines.core.features import FeatureSet, build_feature_set, check_feature_frame
from ml_pipelines.core.hashing import frame_hash
from ml_pipelines.core.snapshots import store_training_data
from ml_pipelines.core.validation import ValidatedData
from ml_pipelines.resources import RegistryResource

if TYPE_CHECKING:
    from ml_pipelines.components.factory import PipelineContext


def features_asset(ctx: "PipelineContext") -> dg.AssetsDefinition:
    spec = ctx.spec
    # a partitioned chain trains on every validated partition at once
    validated_in = dg.AssetIn(
        ctx.key("validated_data"),
        partition_mapping=dg.AllPartitionMapping() if ctx.partitions_def is not None else None,
    )

    @dg.asset(
        key=ctx.key("features"),
        ins={"validated_data": validated_in},
        description=ctx.describe(
            "Train and test frames plus the resolved feature spec. Derived columns and encoders "
            "are fitted inside the model so serving applies the same transform. The data as it entered "
            "this step is stored in the registry, once per data hash, for reproduce and diff."
        ),
        kinds={"pandas", "sklearn"},
        **ctx.stage_settings("features", "features"),
    )
    @fail_fast_on_bad_input
    def features(
        context: dg.AssetExecutionContext, validated_data, registry: RegistryResource
    ) -> dg.Output[FeatureSet]:
        validated = ValidatedData.combine(validated_data)
        data_version = frame_hash(validated.frame)
        # the data as it entered this step, in the registry (once per data hash): what reproduce rebuilds
        # from. Stored once the data is known to split (nothing is stored for data that fails), and
        # before the split copies the rows, so the store's read-back check and that copy never coexist.
        check_feature_frame(spec, validated.frame)
        reg = registry.registry()
        stored = store_training_data(reg, spec.name, validated.frame, data_version)
        feature_set = build_feature_set(spec, validated.frame).with_lineage(
            data_version=data_version, schema=validated.schema, partitions=validated.partitions
        ).with_data_snapshot(stored)
        return dg.Output(
            feature_set,
            data_version=dg.DataVersion(feature_set.data_version),
            metadata={**md.features_metadata(feature_set, ctx.key("raw_data")),
                      "data_snapshot": reg.store.uri(stored.key), "data_snapshot_bytes": stored.bytes},
        )

    return features
