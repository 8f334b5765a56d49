"""Model persistence without loading untrusted pickles.

sklearn pipelines are written with skops, whose loader refuses any type that is
not on an explicit trust list; torch estimators are written as a state_dict plus
a JSON config and read back with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import io
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from ml_pipelines.core.errors import UntrustedArtifactError

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

TRUSTED_MODULE_ROOTS = ("sklearn", "numpy", "scipy", "ml_pipelines")
PIPELINE_FILE = "model.skops"
PREPROCESS_FILE = "preprocess.skops"


def _skops() -> ModuleType:
    """skops.io, imported where a model is read or written: on import it lists every sklearn
    estimator, which imports every sklearn module and, through sklearn's array API support, torch
    (about 2 s), and most processes that import this module (a step that never touches a model,
    a code server loading the definitions) read and write none."""
    import skops.io

    return skops.io


def _pipeline() -> type[Pipeline]:
    """sklearn's Pipeline, imported where a model is made: the bento build child imports this
    module through the service, and never makes one (core.bento_store)."""
    from sklearn.pipeline import Pipeline

    return Pipeline


def _is_torch(model: Pipeline) -> bool:
    return getattr(model[-1], "framework", None) == "torch"


def save_model(model: Pipeline, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    if _is_torch(model):
        preprocess = directory / PREPROCESS_FILE
        _skops().dump(_pipeline()(model.steps[:-1]), preprocess)
        return [preprocess, *model[-1].save(directory)]
    path = directory / PIPELINE_FILE
    _skops().dump(model, path)
    return [path]


def _trusted_loads(data: bytes, source: str, extra_roots: tuple[str, ...]):
    sio = _skops()
    roots = TRUSTED_MODULE_ROOTS + extra_roots
    untrusted = sio.get_untrusted_types(data=data)
    refused = [t for t in untrusted if t.split(".", 1)[0] not in roots]
    if refused:
        raise UntrustedArtifactError(f"{source}: refuses to load untrusted types {', '.join(refused)}")
    return sio.loads(data, trusted=untrusted)


def saved_with_torch(directory: Path) -> bool:
    """Whether save_model wrote a torch estimator into directory (loading it needs torch)."""
    return not (directory / PIPELINE_FILE).exists()


def load_model(directory: Path, extra_trusted_roots: tuple[str, ...] = ()) -> Pipeline:
    if not saved_with_torch(directory):
        pipeline_file = directory / PIPELINE_FILE
        return _trusted_loads(pipeline_file.read_bytes(), str(pipeline_file), extra_trusted_roots)
    from ml_pipelines.core.torch_model import load_torch_estimator

    preprocess = _trusted_loads((directory / PREPROCESS_FILE).read_bytes(), str(directory), extra_trusted_roots)
    return _pipeline()([*preprocess.steps, ("model", load_torch_estimator(directory))])


def serialized_size_bytes(model: Pipeline) -> int:
    if _is_torch(model):
        import torch

        buffer = io.BytesIO()
        torch.save(model[-1].module_.state_dict(), buffer)
        return len(_skops().dumps(_pipeline()(model.steps[:-1]))) + buffer.tell()
    return len(_skops().dumps(model))
