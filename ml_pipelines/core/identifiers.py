"""Pipeline names and version ids: how they are made and how the registry checks them.

The registry builds object keys and file paths from these two strings, so it accepts
only the shapes it makes itself; anything else (`../other`, `/etc`, a newline) is a
RegistryError naming the value, before any key is built.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime

from ml_pipelines.core.errors import RegistryError
from ml_pipelines.spec import NAME_PATTERN

MAX_NAME_LENGTH = 128
# new_version_id: the time it was made plus 6 random hex digits
TIMED_VERSION_PATTERN = r"\d{8}-\d{6}-[0-9a-f]{6}"
# version_id_for_run: every attempt of one run packages the same version
RUN_VERSION_PATTERN = r"run-[0-9a-f]{12}"
VERSION_PATTERN = rf"^(?:{TIMED_VERSION_PATTERN}|{RUN_VERSION_PATTERN})$"
VERSION_EXAMPLES = "20261121-113752-774ddd or run-3f2a9c1b7d4e"


def new_version_id(now: datetime | None = None) -> str:
    """A fresh version id, for packaging outside a run."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def version_id_for_run(run_id: str) -> str:
    """The version a run packages: the same for every attempt (a retried step), another for another run."""
    return f"run-{hashlib.sha256(run_id.encode()).hexdigest()[:12]}"


def check_pipeline_name(name: object) -> str:
    """The name itself when it is a valid pipeline name; a one-line RegistryError otherwise."""
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not re.fullmatch(NAME_PATTERN, name):
        raise RegistryError(
            f"pipeline name {_shown(name)} is not valid: a pipeline name matches [a-z][a-z0-9_]* "
            f"(at most {MAX_NAME_LENGTH} characters)"
        )
    return name


def check_version_id(version: object) -> str:
    """The id itself when it has the shape the registry gives versions; a one-line RegistryError otherwise."""
    if not isinstance(version, str) or not re.fullmatch(VERSION_PATTERN, version):
        raise RegistryError(f"version id {_shown(version)} is not valid: version ids look like {VERSION_EXAMPLES}")
    return version


def is_pipeline_name(name: str) -> bool:
    try:
        check_pipeline_name(name)
    except RegistryError:
        return False
    return True


def _shown(value: object) -> str:
    """repr, cut short: one line however long or strange the value is."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."
