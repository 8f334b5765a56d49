"""ConfigurableResources: the model registry, the BentoML store, the local work
directory and the IO manager between steps. Local and cloud implementations share
one interface."""

from ml_pipelines.resources.io_manager import FrameIOManager, LocalFrameIOManager, S3FrameIOManager
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
    "FrameIOManager",
    "LocalFrameIOManager",
    "LocalRegistryResource",
    "PredictionLogResource",
    "RegistryResource",
    "S3FrameIOManager",
    "S3RegistryResource",
    "WorkdirResource",
    "local_resources",
]
