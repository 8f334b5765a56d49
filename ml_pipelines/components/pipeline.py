"""The MLPipeline component: a `defs.yaml` whose attributes are a PipelineSpec, and its
scaffolder (`dg scaffold defs ml_pipelines.components.MLPipeline <folder> --from <csv> --target <column>`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field

from ml_pipelines.components.factory import build_pipeline_defs
from ml_pipelines.core.scaffold import find_project_root, render_starter_spec
from ml_pipelines.spec import NAME_PATTERN, PipelineSpec


class StarterSpecParams(BaseModel):
    """`dg scaffold defs` options: the same as `ml-pipelines init`'s."""

    # dg validates the options by alias (`from`), then again from their dump by field name
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    source: str = Field(
        alias="from", description="CSV file to infer the schema from (relative to the current folder)."
    )
    target: str = Field(description="Column to predict.")
    task: Literal["auto", "classification", "regression"] = Field(
        default="auto", description="What to predict; auto infers it from the target column."
    )


class MLPipelineScaffolder(dg.Scaffolder[StarterSpecParams]):
    """Writes the starter spec `ml-pipelines init` writes; the pipeline is named after the folder."""

    @classmethod
    def get_scaffold_params(cls) -> type[StarterSpecParams]:
        return StarterSpecParams

    def scaffold(self, request: dg.ScaffoldRequest[StarterSpecParams]) -> None:
        if request.scaffold_format != "yaml":
            raise ValueError("an MLPipeline is a YAML spec: scaffold it with --format yaml (the default)")
        name, params = request.target_path.name, request.params
        if not re.match(NAME_PATTERN, name):
            raise ValueError(f"the folder name {name!r} is the pipeline's name, which must match {NAME_PATTERN}")
        command = f"dg scaffold defs {request.type_name} ... --from {params.source} --target {params.target}"
        project_root = request.project_root or find_project_root(request.target_path)
        text = render_starter_spec(
            name, Path(params.source), params.target, task=params.task, project_root=project_root, command=command
        )
        (request.target_path / "defs.yaml").write_text(text)


@dg.scaffold_with(MLPipelineScaffolder)
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
            # Dagster passes None for `attributes: {}` as for no attributes at all
            required = PipelineSpec.model_json_schema(by_alias=True)["required"]
            raise dg.DagsterInvalidDefinitionError(
                f"{context.path / 'defs.yaml'}: `attributes` is empty or missing; a pipeline spec needs "
                f"{', '.join(required)}. Write a starter spec with `ml-pipelines init` or "
                "`dg scaffold defs ml_pipelines.components.MLPipeline <folder> --from <csv> --target <column>`."
            )
        return cls(attributes)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return build_pipeline_defs(self.spec, base_dir=context.project_root)
