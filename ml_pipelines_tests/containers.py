"""Container images built and run for real, with podman (Debian's podman, runc and debootstrap,
which .ci/run installs), for prod/test_containers.py and bench/container_build.py. No image
registry is reached:

- the base is Debian bookworm made here (`debootstrap --variant=minbase`, with Debian's python3
  3.11, its venv module and pip, and CA certificates), imported into podman's store once; its tag
  carries a digest of its recipe, so a changed recipe makes a new base and never reuses a stale one;
- builds and containers use the host's network (the package registries, and the tests' servers on
  loopback) and its CA certificates (/etc/ssl/certs, mounted read-only), runc as the runtime and
  the ulimits this kernel lets a container set (CONTAINERS_CONF, for every podman call, BentoML's too);
- torch is the CPU wheel the host's pip finds for torch==<the version installed here> (the
  Makefile installs the same), mounted at /wheels (docker/Dockerfile's TORCH_SOURCE).

The images stay tagged in podman's store after the suite (USER_CODE_IMAGE, and every bento's image
under the bento's own name), so the next run's builds reuse each layer whose inputs did not change.
Nothing here skips: a missing tool is an error that says what to install.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ml_pipelines import __version__
from ml_pipelines_tests import REPO_ROOT

RUNC = "/usr/sbin/runc"
TOOLS = {"podman": "podman", "runc": RUNC, "debootstrap": "debootstrap"}
CERTS = "/etc/ssl/certs"
SUITE = "bookworm"  # its python3 is 3.11, the version python:3.11-slim has
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
# what the base does besides installing BASE_PACKAGES: pip may install into the system Python (as in
# python:3.11-slim, where BentoML's image runs `pip install uv`), and tools that bring their own CA
# list (uv) read the system's, which a build replaces with the host's
BASE_SETUP = ("rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED",)
BASE_CHANGES = ("ENV LANG=C.UTF-8", "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", 'CMD ["python3"]')
BASE_REPOSITORY = "localhost/ml-pipelines-base"
USER_CODE_REPOSITORY = "localhost/ml-pipelines-user-code"
USER_CODE_IMAGE = f"{USER_CODE_REPOSITORY}:{__version__}"  # docker/helm/values.yaml names it with the same tag
USER_CODE_SIZE_BUDGET = 2_600_000_000  # bytes, as podman counts them (README, "Container images")
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
"""
STATE_DIR = Path("/var/tmp/ml-pipelines-containers")  # the torch wheel and the lock, kept between runs


class ContainerError(RuntimeError):
    """A tool is missing, or a build or container failed; the message holds the output's tail."""


def require_tools() -> None:
    missing = [name for name, path in TOOLS.items() if shutil.which(path) is None]
    if missing:
        raise ContainerError(f"{', '.join(missing)} not found: apt-get install -y podman runc debootstrap")


def podman_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every podman call: CONTAINERS_CONF names a file with runc and the ulimits."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    conf = STATE_DIR / "containers.conf"
    if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
        conf.write_text(CONTAINERS_CONF)
    return {**(os.environ if base is None else base), "CONTAINERS_CONF": str(conf)}


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=podman_env(),
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise ContainerError(f"podman {' '.join(args[:3])} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def image_exists(reference: str) -> bool:
    return podman("image", "exists", reference, check=False).returncode == 0


def image_size(reference: str) -> int:
    """Bytes, as `podman images` counts them (every layer, uncompressed)."""
    return int(podman("image", "inspect", "--format", "{{.Size}}", reference).stdout.strip())


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """One process at a time (two test sessions on one machine make one base, not two)."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def base_image_name() -> str:
    recipe = "\n".join([SUITE, *BASE_PACKAGES, *BASE_SETUP, *BASE_CHANGES])
    return f"{BASE_REPOSITORY}:{SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def base_image() -> str:
    """The local Debian base (made once per recipe; about a minute: debootstrap downloads Debian's packages)."""
    require_tools()
    name = base_image_name()
    with _locked("base"):
        if not image_exists(name):
            make_base(name)
    return name


def make_base(name: str) -> None:
    with tempfile.TemporaryDirectory(prefix="ml-pipelines-base-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "root"
        debootstrap = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(root),
             "http://deb.debian.org/debian"],
            capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
        )
        if debootstrap.returncode != 0:
            raise ContainerError(f"debootstrap failed ({debootstrap.returncode}):\n{debootstrap.stdout[-3000:]}"
                                 f"\n{debootstrap.stderr[-3000:]}")
        for command in BASE_SETUP:
            subprocess.run(["chroot", str(root), "sh", "-c", command], check=True, timeout=60)
        # the package lists and downloaded .debs are half the root's size; the image needs neither
        for leftover in (root / "var/lib/apt/lists", root / "var/cache/apt"):
            shutil.rmtree(leftover, ignore_errors=True)
        changes = [arg for change in BASE_CHANGES for arg in ("--change", change)]
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        try:
            imported = subprocess.run(["podman", "import", *changes, "-", name], stdin=tar.stdout,
                                      capture_output=True, text=True, timeout=600, env=podman_env())
        finally:
            tar.stdout.close()
            tar.wait(timeout=60)
        if imported.returncode != 0 or tar.returncode != 0:
            raise ContainerError(f"podman import failed ({imported.returncode}, tar {tar.returncode}):\n"
                                 f"{imported.stderr}")


def torch_wheel_dir() -> Path:
    """A folder holding the CPU wheel of the torch installed here, as the host's pip finds it."""
    wanted = f"torch=={metadata.version('torch')}"
    if "+cpu" not in wanted:
        raise ContainerError(f"{wanted} is not the CPU build; the images are built with the CPU wheel")
    folder = STATE_DIR / "wheels"
    with _locked("wheels"):
        download = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(folder), wanted],
            capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
        )
    if download.returncode != 0 or not list(folder.glob("torch-*+cpu-*.whl")):
        raise ContainerError(f"pip download {wanted} failed:\n{download.stdout[-2000:]}\n{download.stderr[-2000:]}")
    return folder


@dataclass(frozen=True)
class Built:
    image_id: str
    tag: str
    seconds: float
    log: str


BUILD_OPTIONS = ("--pull=never", "--network", "host", "--volume", f"{CERTS}:{CERTS}:ro")


def build_user_code(tag: str = USER_CODE_IMAGE, *, context: Path = REPO_ROOT, no_cache: bool = False,
                    timeout: float = 3600) -> Built:
    """docker/Dockerfile built on the local base with the local torch wheel, tagged `tag`."""
    base, wheels = base_image(), torch_wheel_dir()
    with tempfile.TemporaryDirectory() as tmp:
        iidfile = Path(tmp) / "iid"
        command = [
            "build", *BUILD_OPTIONS, "--volume", f"{wheels}:/wheels:ro",
            "--build-arg", f"BASE_IMAGE={base}", "--build-arg", "TORCH_SOURCE=--find-links /wheels",
            "--iidfile", str(iidfile), "--tag", tag, "--file", str(DOCKERFILE),
            *(["--no-cache"] if no_cache else []), str(context),
        ]
        started = time.perf_counter()
        result = podman(*command, timeout=timeout)
        return Built(iidfile.read_text().strip(), tag, time.perf_counter() - started, result.stdout + result.stderr)


def containerize_bento(bento_tag: str, bentoml_home: Path, *, no_cache: bool = False, timeout: float = 1800) -> Built:
    """`bentoml containerize` with the podman backend, on the local base (`--opt from`, which
    replaces the bento's python:3.11-slim); the image is tagged with the bento's own tag."""
    base = base_image()
    # (BentoML passes `--opt pull=never` as `--pull never`, which podman cannot parse: the base is local, and
    # podman's default pulls only a missing image)
    options = [f"--opt={option}" for option in (
        "network=host", f"volume={CERTS}:{CERTS}:ro", f"from={base}", *(["no-cache"] if no_cache else []),
    )]
    env = {**podman_env(), "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "True"}
    bentoml = REPO_ROOT / ".venv" / "bin" / "bentoml"
    started = time.perf_counter()
    result = subprocess.run(
        [str(bentoml) if bentoml.exists() else "bentoml", "containerize", bento_tag, "--backend", "podman",
         "--image-tag", bento_tag, *options],
        capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - started
    log = result.stdout + result.stderr
    # BentoML logs a failed build and exits 0: the image must be there
    if result.returncode != 0 or not image_exists(bento_tag):
        raise ContainerError(f"bentoml containerize {bento_tag} failed ({result.returncode}):\n{log[-5000:]}")
    image_id = podman("image", "inspect", "--format", "{{.Id}}", bento_tag).stdout.strip()
    return Built(image_id, bento_tag, seconds, log)


def run_command(image: str, *, name: str, env: Mapping[str, str] | None = None,
                volumes: Sequence[str] = (), args: Sequence[str] = ()) -> list[str]:
    """`podman run` in the foreground on the host's network, removed when it stops; the podman
    client forwards SIGTERM to the container's process (servers.running stops it that way)."""
    environment = [arg for key, value in (env or {}).items() for arg in ("--env", f"{key}={value}")]
    mounts = [arg for volume in volumes for arg in ("--volume", volume)]
    return ["podman", "run", "--rm", "--name", name, "--network", "host", "--pull=never",
            *environment, *mounts, image, *args]


def remove_container(name: str) -> None:
    """Make sure a container is gone (it normally removes itself when it stops)."""
    podman("rm", "--force", "--ignore", "--time", "0", name, check=False, timeout=60)


def remove_other_tags(repository: str, keep: str, older_than: str = "1h") -> None:
    """Untag the repository's images other than `keep` (older bento versions) built over `older_than`
    ago: their layers that `keep` shares stay cached. A newer one may be another test session's on
    this machine, about to run; one in use by a container is left alone."""
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", f"reference={repository}",
                    "--filter", f"until={older_than}").stdout
    for reference in set(listed.split()) - {keep}:
        podman("rmi", reference, check=False, timeout=60)
