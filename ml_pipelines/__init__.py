"""ml_pipelines: declarative ML pipelines on Dagster."""

__version__ = "0.1.0"
