"""The MLPipeline component: a `defs.yaml` whose attributes are a PipelineSpec."""

from __future__ import annotations

import dagster as dg
from pydantic import BaseModel

from ml_pipelines.components.factory import build_pipeline_defs
from ml_pipelines.spec import PipelineSpec


class MLPipeline(dg.Component):
    """One ML pipeline (ingestion -> validation -> features -> training -> evaluation
    -> packaging) built from a YAML spec; see DESIGN section 3 for the fields."""

    def __init__(self, spec: PipelineSpec):
        self.spec = spec

    @classmethod
    def get_model_cls(cls) -> type[BaseModel]:
        # Dagster validates the YAML attributes against the spec and reports the
        # file, line and field path of any error.
        return PipelineSpec

    @classmethod
    def load(cls, attributes: BaseModel | None, context: dg.ComponentLoadContext) -> MLPipeline:
        if not isinstance(attributes, PipelineSpec):
            raise dg.DagsterInvalidDefinitionError(f"{context.path}: an MLPipeline needs `attributes`")
        return cls(attributes)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return build_pipeline_defs(self.spec, base_dir=context.project_root)
