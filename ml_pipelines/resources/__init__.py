"""ConfigurableResources: the model registry, the BentoML store and the local
work directory. Local and cloud implementations share one interface."""

from ml_pipelines.resources.platform import (
    BentoStoreResource,
    LocalRegistryResource,
    PredictionLogResource,
    RegistryResource,
    S3RegistryResource,
    WorkdirResource,
    local_resources,
)

__all__ = [
    "BentoStoreResource",
    "LocalRegistryResource",
    "PredictionLogResource",
    "RegistryResource",
    "S3RegistryResource",
    "WorkdirResource",
    "local_resources",
]
