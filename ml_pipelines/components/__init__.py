from ml_pipelines.components.factory import build_pipeline_defs
from ml_pipelines.components.pipeline import MLPipeline

__all__ = ["MLPipeline", "build_pipeline_defs"]
