"""validated_data: the rows of raw_data that pass the schema's row-level rules."""

from typing import TYPE_CHECKING

import dagster as dg
import pandas as pd

from ml_pipelines.components import metadata as md
from ml_pipelines.components.policies import fail_fast_on_bad_input
from ml_pipelines.core.champion import champion_schema
from ml_pipelines.core.hashing import frame_hash
from ml_pipelines.core.validation import ValidatedData, keep_valid_rows, spec_schema
from ml_pipelines.resources import RegistryResource

if TYPE_CHECKING:
    from ml_pipelines.components.factory import PipelineContext


def validated_data_asset(ctx: "PipelineContext") -> dg.AssetsDefinition:
    spec = ctx.spec

    @dg.asset(
        key=ctx.key("validated_data"),
        ins={"raw_data": dg.AssetIn(ctx.key("raw_data"))},
        description=ctx.describe(
            "Rows of raw_data that pass the schema's row-level rules; the resolved rules "
            "and the rows dropped per rule are in the metadata."
        ),
        kinds={"pandas", "great_expectations"},
        partitions_def=ctx.partitions_def,
        **ctx.stage_settings("validated_data", "validation"),
    )
    @fail_fast_on_bad_input
    def validated_data(
        context: dg.AssetExecutionContext, raw_data: pd.DataFrame, registry: RegistryResource
    ) -> dg.Output[ValidatedData]:
        reference, _ = champion_schema(registry.registry(), ctx.name)
        schema = spec_schema(spec, raw_data, reference)
        partition = context.partition_key if ctx.partitions_def is not None else None
        value, counts = keep_valid_rows(
            raw_data, schema, block=spec.data_schema.on_failure == "block", pipeline=ctx.name,
            partitions=(partition,) if partition else (),
        )
        return dg.Output(
            value,
            data_version=dg.DataVersion(frame_hash(value.frame)),
            metadata={
                "rows_in": len(raw_data),
                "rows_dropped": value.dropped_rows,
                "dropped_by_rule": md.markdown_table(
                    ["rule", "column", "rows"], [[r, c, n] for (r, c), n in counts.items()]
                ),
                "schema_rules": dg.MetadataValue.json(schema.to_dict()),
                **md.frame_metadata(value.frame),
            },
        )

    return validated_data
