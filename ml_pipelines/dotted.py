"""Import objects named by dotted path (`pkg.module:attr` or `pkg.module.attr`), from
trusted modules only.

The trust model (README, "Security model"): a spec runs the code it names by dotted
path (`source.generator`, `features.derived[].function`, `models[].estimator`), so a
path is allowed only under a trusted module prefix:

- DEFAULT_TRUSTED_MODULES (`ml_pipelines`, `sklearn`, `torch`);
- the project's own top-level packages (`project_packages()`);
- the packages in the one setting ML_PIPELINES_TRUSTED_MODULES (Settings.extra_trusted_modules).

The prefix is checked before anything is imported. Every module reached while
resolving the attribute path, and the module that defines the object found, must be
trusted too, so a trusted module's own imports (`sklearn.datasets._base:shutil.rmtree`)
do not reach the standard library. Dunder names (`__globals__`, `__builtins__`) are refused.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import re
from collections.abc import Iterable
from types import ModuleType
from typing import Any

DEFAULT_TRUSTED_MODULES = ("ml_pipelines", "sklearn", "torch")
# the distribution this project installs; its top-level packages are "the project's own"
PROJECT_DISTRIBUTION = "ml_pipelines"
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TRUST_SETTING = "ML_PIPELINES_TRUSTED_MODULES"


class UntrustedPathError(ValueError):
    """A dotted path names code outside the trusted modules; nothing was imported for it."""


@functools.cache
def project_packages() -> tuple[str, ...]:
    """The top-level packages the project installs (its distribution's top_level.txt, written
    from pyproject's package list): `ml_pipelines`, and `ml_pipelines_tests` in a checkout."""
    try:
        listed = importlib.metadata.distribution(PROJECT_DISTRIBUTION).read_text("top_level.txt") or ""
    except importlib.metadata.PackageNotFoundError:
        listed = ""
    names = [line.strip() for line in listed.splitlines() if IDENTIFIER.match(line.strip())]
    return tuple(dict.fromkeys(["ml_pipelines", *names]))


def trusted_modules(extra: Iterable[str] | None = None) -> tuple[str, ...]:
    """Every trusted prefix; `extra` defaults to the ML_PIPELINES_TRUSTED_MODULES setting."""
    if extra is None:
        from ml_pipelines.settings import Settings

        extra = Settings.from_env().extra_trusted_modules
    return tuple(dict.fromkeys([*DEFAULT_TRUSTED_MODULES, *project_packages(), *extra]))


def is_trusted(module_name: str, trusted: Iterable[str]) -> bool:
    """`sklearn.linear_model` is under `sklearn`; `sklearn_evil` is not."""
    return any(module_name == prefix or module_name.startswith(prefix + ".") for prefix in trusted)


def split_dotted(path: str) -> tuple[str, list[str]]:
    """`pkg.module:attr.sub` or `pkg.module.attr` -> ("pkg.module", ["attr", ...]), without importing."""
    if ":" in path:
        module_name, _, attr_path = path.partition(":")
    else:
        module_name, _, attr_path = path.rpartition(".")
    if not module_name or not attr_path:
        raise ValueError(f"{path!r} is not a dotted path like 'package.module:name'")
    parts = [*module_name.split("."), *attr_path.split(".")]
    if not all(IDENTIFIER.match(part) for part in parts):
        raise ValueError(f"{path!r} is not a dotted path like 'package.module:name'")
    if any(part.startswith("__") and part.endswith("__") for part in parts):
        raise UntrustedPathError(f"{path!r} names a dunder attribute; name a public function or class")
    return module_name, attr_path.split(".")


def _refuse(module_name: str, trusted: tuple[str, ...]) -> UntrustedPathError:
    return UntrustedPathError(
        f"module {module_name!r} is outside the trusted modules ({', '.join(trusted)}); "
        f"a deployment can trust more packages with {TRUST_SETTING}"
    )


def import_dotted(path: str, trusted: Iterable[str] | None = None) -> Any:
    """The object `path` names, imported only if every module involved is trusted.
    `trusted` defaults to trusted_modules() (the defaults plus the setting)."""
    trusted = tuple(trusted_modules() if trusted is None else trusted)
    module_name, attrs = split_dotted(path)
    if not is_trusted(module_name, trusted):
        raise _refuse(module_name, trusted)
    obj: Any = importlib.import_module(module_name)
    for attr in attrs:
        obj = getattr(obj, attr)
        if isinstance(obj, ModuleType) and not is_trusted(obj.__name__, trusted):
            raise _refuse(obj.__name__, trusted)
    defined_in = getattr(obj, "__module__", None)
    if isinstance(defined_in, str) and not is_trusted(defined_in, trusted):
        raise _refuse(defined_in, trusted)
    return obj
