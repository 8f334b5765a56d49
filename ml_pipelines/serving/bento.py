"""The BentoML model and the bento build, run as
`python -m ml_pipelines.serving.bento <pipeline> <version> [<artifact dir> <model details json>]`
by core.packaging.build_bento: offline (lock_packages: false), in a subprocess because
the build imports the service module, which reads its configuration on import (and declares,
through @bentoml.service(envs=...), the environment the bento serves with), and because
BentoML's public API writes to the store of the process's BENTOML_HOME. With an artifact
directory the model is saved first (bentoml.models.create), then the bento is built.

The bento's image (what `bentoml containerize` builds, `bento_image`) is declared by the
service (ml_pipelines.serving.service), as BentoML reads it from there.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from ml_pipelines.core.model_io import saved_with_torch

if TYPE_CHECKING:
    from bentoml.images import Image

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = PROJECT_ROOT / "ml_pipelines"  # what a bento carries of it: include= in _build
VERSION_ARG = "version"  # the bento's argument that names the version it carries (bentoml.use_arguments)
# what the service imports, pinned to the versions that trained and packaged the model
RUNTIME_PACKAGES = ["bentoml", "pandas", "numpy", "scikit-learn", "skops", "pydantic", "scipy", "pyyaml"]
# the image `bentoml containerize` builds on; podman and buildah swap it with `--opt from=IMAGE`
BASE_IMAGE = "python:3.11-slim"
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"  # torch==<version>+cpu, without CUDA's packages
AUDIT_HOME = "/var/lib/ml_pipelines"


def bento_image(model_dir: Path) -> Image:
    """The bento's image: BASE_IMAGE with RUNTIME_PACKAGES at this environment's versions, and
    torch (the CPU build, from TORCH_INDEX) only when the model in model_dir is a torch model.
    No distro is named: BentoML would add that distro's default packages (apt-get install of a
    compiler, git and gnupg) as the image's first command, and every package here installs from a
    wheel, so the image stays small."""
    import bentoml

    image = bentoml.images.Image(base_image=BASE_IMAGE, distro="none", lock_python_packages=False)
    packages = [f"{name}=={metadata.version(name)}" for name in RUNTIME_PACKAGES]
    if saved_with_torch(model_dir):
        packages += [f"--extra-index-url {TORCH_INDEX}", f"torch=={metadata.version('torch')}"]
    # the audit trail's home when ML_PIPELINES_HOME points there (docker/k8s, docker-compose.yaml): a volume
    # mounted on it starts with this folder's owner, the image's user
    return image.python_packages(*packages).run(f"mkdir -p {AUDIT_HOME} && chown bentoml:bentoml {AUDIT_HOME}")


def _save_model(pipeline: str, version: str, artifact_dir: Path, details: Path) -> str:
    """`<pipeline>:<version>` in the BentoML model store, holding every artifact; details: labels, metadata."""
    import bentoml

    described = json.loads(details.read_text())
    with bentoml.models.create(
        f"{pipeline}:{version}", labels=described["labels"], metadata=described["metadata"],
        module="ml_pipelines.serving",
    ) as model:
        for path in artifact_dir.rglob("*"):
            if path.is_file():
                target = Path(model.path) / path.relative_to(artifact_dir)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    return str(model.tag)


def _left_out(directory: str, names: list[str]) -> list[str]:
    """What _build's exclude= leaves out of the bento anyway: the demo pipelines' folder, bytecode."""
    return [name for name in names if name == "__pycache__" or (Path(directory) == PACKAGE_DIR and name == "defs")]


def _build(pipeline: str, version: str) -> str:
    import bentoml

    # the build context is a copy of the package alone: BentoML walks every file under its build
    # context (twice, with no pruning), and the package's home holds a virtualenv (a checkout) or
    # every installed package (site-packages), tens of thousands of files, about 2 s a build
    with tempfile.TemporaryDirectory(prefix="bento-context-") as context:
        shutil.copytree(PACKAGE_DIR, Path(context, PACKAGE_DIR.name), ignore=_left_out)
        bento = bentoml.bentos.build(
            "ml_pipelines.serving.service:ModelService",
            name=pipeline.replace("_", "-"),
            version=version,
            labels={"pipeline": pipeline, "version": version},
            description=f"{pipeline} model {version}, served by ml_pipelines",
            include=["ml_pipelines/**/*.py", "ml_pipelines/**/*.yaml"],
            exclude=["ml_pipelines/defs/**", "**/__pycache__"],
            models=[f"{pipeline}:{version}"],
            args={VERSION_ARG: version},
            build_ctx=context,
        )
    return str(bento.tag)


if __name__ == "__main__":
    from ml_pipelines.core.bento_store import BENTO_TAG_LINE, MODEL_TAG_LINE

    if len(sys.argv) == 5:
        print(f"{MODEL_TAG_LINE}{_save_model(sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))}")
    print(f"{BENTO_TAG_LINE}{_build(sys.argv[1], sys.argv[2])}")
