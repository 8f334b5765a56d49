"""Build time and size of the container images, the way the tests build them (podman, runc, a local
Debian base, the local CPU torch wheel: ml_pipelines_tests/containers.py):

- the base: debootstrap + import, made under a throwaway name (the suite's own stays as it is);
- the user-code image (docker/Dockerfile): cold (`--no-cache`: every layer rebuilt, every dependency
  downloaded again), cached (nothing changed: what a CI run with no change to pyproject.toml or
  constraints.txt pays, besides its source layers), and after a source edit (one module changed in
  a copy of the build context: the package's wheel and its install layer only);
- the model service's image (`bentoml containerize`, podman backend) of a packaged
  diabetes_progression version: cold, cached, and for a new version of the same pipeline (what
  each CI run pays: the layers up to the model's files are the same for every version).

Ratios are against the cold build of the same run. The images it leaves are the suite's cache.

    python -m bench.container_build      (as root, with podman, runc and debootstrap installed)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import machine, print_table, write_results
from ml_pipelines_tests import REPO_ROOT, containers

PIPELINE = "diabetes_progression"
EDITED_TAG = f"{containers.USER_CODE_REPOSITORY}:bench-edit"
SAVE_TAG = f"{containers.USER_CODE_REPOSITORY}:bench-previous"


def _base() -> dict[str, Any]:
    name = f"{containers.BASE_REPOSITORY}:bench-{os.getpid()}"
    started = time.perf_counter()
    containers.make_base(name)  # the suite's recipe, under a throwaway name
    seconds = time.perf_counter() - started
    size = containers.image_size(name)
    containers.podman("rmi", name)
    return {"seconds": seconds, "size_bytes": size}


def _edited_context(root: Path) -> Path:
    """The build context (what docker/Dockerfile copies) with one module changed."""
    for name in ("pyproject.toml", "constraints.txt", "README.md"):
        shutil.copy(REPO_ROOT / name, root / name)
    shutil.copytree(REPO_ROOT / "ml_pipelines", root / "ml_pipelines", ignore=shutil.ignore_patterns("__pycache__"))
    with open(root / "ml_pipelines" / "__init__.py", "a") as module:
        module.write(f"# edited by bench.container_build at {time.time()}\n")
    return root


def _user_code() -> dict[str, Any]:
    cold = containers.build_user_code(no_cache=True)
    cached = containers.build_user_code()
    with tempfile.TemporaryDirectory() as tmp:
        edited = containers.build_user_code(EDITED_TAG, context=_edited_context(Path(tmp)))
    containers.podman("untag", EDITED_TAG)
    return {
        "image": containers.USER_CODE_IMAGE,
        "size_bytes": containers.image_size(cold.image_id),
        "size_budget_bytes": containers.USER_CODE_SIZE_BUDGET,
        "cold_s": cold.seconds,
        "cached_s": cached.seconds,
        "source_edit_s": edited.seconds,
        "cached_vs_cold": cached.seconds / cold.seconds,
        "source_edit_vs_cold": edited.seconds / cold.seconds,
    }


def _package(home: Path) -> str:
    """A new packaged version of PIPELINE in home (`ml-pipelines demo`); returns its bento tag."""
    env = {**os.environ, "ML_PIPELINES_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home")}
    subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "ml-pipelines"), "demo", "--pipelines", PIPELINE],
                   cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=900)
    name = PIPELINE.replace("_", "-")
    bentos = sorted((home / "bentoml" / "bentos" / name).iterdir(), key=lambda p: p.stat().st_mtime)
    return f"{name}:{bentos[-1].name}"


def _bento() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        first = _package(home)
        cold = containers.containerize_bento(first, home / "bentoml", no_cache=True)
        cached = containers.containerize_bento(first, home / "bentoml")
        second = _package(home)
        next_version = containers.containerize_bento(second, home / "bentoml")
    for tag in (first, second):
        containers.podman("untag", tag, check=False)
    return {
        "image": f"{PIPELINE.replace('_', '-')}:<version>",
        "size_bytes": containers.image_size(next_version.image_id),
        "cold_s": cold.seconds,
        "cached_s": cached.seconds,
        "new_version_s": next_version.seconds,
        "cached_vs_cold": cached.seconds / cold.seconds,
        "new_version_vs_cold": next_version.seconds / cold.seconds,
    }


def main() -> None:
    load = [round(x, 2) for x in os.getloadavg()]
    base = _base()
    user_code = _user_code()
    bento = _bento()
    gb = 1e9
    print_table("container builds (podman, local Debian base)", ["image", "size", "cold", "cached", "after a change"], [
        ["base (debootstrap + import)", f"{base['size_bytes'] / gb:.2f} GB", f"{base['seconds']:.0f} s", "-", "-"],
        ["user code", f"{user_code['size_bytes'] / gb:.2f} GB", f"{user_code['cold_s']:.0f} s",
         f"{user_code['cached_s']:.1f} s ({user_code['cached_vs_cold']:.3f}x)",
         f"source edit {user_code['source_edit_s']:.1f} s ({user_code['source_edit_vs_cold']:.3f}x)"],
        ["model service (bento)", f"{bento['size_bytes'] / gb:.2f} GB", f"{bento['cold_s']:.0f} s",
         f"{bento['cached_s']:.1f} s ({bento['cached_vs_cold']:.3f}x)",
         f"new version {bento['new_version_s']:.1f} s ({bento['new_version_vs_cold']:.3f}x)"],
    ])
    path = write_results("container_build", {
        "load_average_at_start": load, "base": base, "user_code": user_code, "bento": bento,
        "note": "cold: --no-cache, every dependency downloaded again; the base is made separately (base)",
    })
    print(f"\nwrote {path} (load average now {machine()['load_average']})")


if __name__ == "__main__":
    main()
