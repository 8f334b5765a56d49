"""Settings.from_env(): the one place that reads the process environment.

Everything else takes a Settings (or a value from one): the Dagster resources
(defs/resources.py), the command line, the model service and the bento build.
Nothing in the package writes os.environ; a child process gets its environment
from `Settings.child_env(...)`.

Variables:
    ML_PIPELINES_ENV          storage: local (default) | prod
    ML_PIPELINES_EXECUTOR     execution: in_process | multiprocess | k8s (default: in_process
                              for local, k8s for prod); any storage runs with any executor
    ML_PIPELINES_HOME         local registry, BentoML store, reports, audit log (default ./.ml_pipelines)
    ML_PIPELINES_S3_BUCKET    prod: the bucket for assets, registry and bento exports
    ML_PIPELINES_S3_PREFIX    prod: the key prefix inside it (default ml_pipelines)
    DAGSTER_HOME              the Dagster instance folder (the demo defaults it to ./.dagster_home)
    ML_PIPELINES_SERVE_*, ML_PIPELINES_AUDIT, ML_PIPELINES_API_KEYS, ML_PIPELINES_WATCH_SECONDS,
    ML_PIPELINES_SERVING      the model service (see ServeSettings)
    ML_PIPELINES_TRUSTED_MODULES  comma-separated packages a spec may name code from, on top of
                              the defaults (ml_pipelines.dotted.trusted_modules)
    ML_PIPELINES_USAGE_INTERVAL   seconds between a step's memory samples (default 0.1; 0 records no
                              usage figures): see ml_pipelines.core.usage
Specs may name any variable as ${VAR} in a path or {{ env.VAR }} in a connection;
those are resolved at run time from `Settings.variables`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

ENVIRONMENTS = ("local", "prod")
EXECUTORS = ("multiprocess", "in_process", "k8s")
DEFAULT_EXECUTOR = {"local": "in_process", "prod": "k8s"}
DEFAULT_HOME = ".ml_pipelines"
DEFAULT_S3_PREFIX = "ml_pipelines"
DEFAULT_REPORTS_URL = "http://127.0.0.1:3002"  # make dev has 3000, ml-pipelines serve 3001
DEFAULT_USAGE_INTERVAL_S = 0.1
# every child process we start stays offline and quiet
QUIET_ENV = {"BENTOML_DO_NOT_TRACK": "True", "DAGSTER_DISABLE_TELEMETRY": "1"}
MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class SettingsError(ValueError):
    """An environment variable holds a value the platform cannot use; the message names it."""


@dataclass(frozen=True)
class ServeSettings:
    """How `bentoml serve ml_pipelines.serving.service:ModelService` is configured."""

    pipeline: str | None = None  # ML_PIPELINES_SERVE_PIPELINE
    version: str | None = None  # ML_PIPELINES_SERVE_VERSION: pin a version instead of following the champion
    from_bento: bool = False  # ML_PIPELINES_SERVE_FROM=bento: the record ships inside the BentoML model
    audit: bool = True  # ML_PIPELINES_AUDIT=off turns the audit trail off
    api_keys: str = field(default="", repr=False)  # ML_PIPELINES_API_KEYS: `id:sha256hex,...`
    watch_seconds: float = 2.0  # ML_PIPELINES_WATCH_SECONDS: how often the champion alias is polled
    overrides: Mapping[str, Any] = field(default_factory=dict)  # ML_PIPELINES_SERVING: JSON over the spec's serving
    # ML_PIPELINES_SERVE_PARENT: the pid of `bentoml serve`, set by `ml-pipelines serve`; its workers stop with it
    parent_pid: int | None = None
    # ML_PIPELINES_SERVE_BUILDING=1, set by the bento build: it declares the service and serves nothing,
    # so the model's files are checked against the record but the model is not loaded (about 3 s)
    building: bool = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ServeSettings:
        return cls(
            pipeline=environ.get("ML_PIPELINES_SERVE_PIPELINE") or None,
            version=environ.get("ML_PIPELINES_SERVE_VERSION") or None,
            from_bento=environ.get("ML_PIPELINES_SERVE_FROM") == "bento",
            audit=environ.get("ML_PIPELINES_AUDIT", "on").lower() not in ("off", "0", "false"),
            api_keys=environ.get("ML_PIPELINES_API_KEYS", ""),
            watch_seconds=_number(environ, "ML_PIPELINES_WATCH_SECONDS", 2.0),
            overrides=_json_object(environ, "ML_PIPELINES_SERVING"),
            parent_pid=_pid(environ, "ML_PIPELINES_SERVE_PARENT"),
            building=environ.get("ML_PIPELINES_SERVE_BUILDING") == "1",
        )


@dataclass(frozen=True)
class Settings:
    environment: str = "local"  # where things are stored: local files, or PostgreSQL and S3
    executor: str = "in_process"  # how a run's steps execute: see EXECUTORS
    home: Path = field(default_factory=lambda: Path(DEFAULT_HOME).resolve())
    s3_bucket: str | None = None
    s3_prefix: str = DEFAULT_S3_PREFIX
    dagster_home: Path | None = None
    serve: ServeSettings = field(default_factory=ServeSettings)
    # ML_PIPELINES_TRUSTED_MODULES: packages a spec may name code from, besides the defaults
    extra_trusted_modules: tuple[str, ...] = ()
    # ML_PIPELINES_REPORTS_URL: where `ml-pipelines reports` serves model cards and Data Docs (local)
    reports_url: str = DEFAULT_REPORTS_URL
    # ML_PIPELINES_USAGE_INTERVAL: seconds between a step's usage samples; 0: no usage figures
    usage_interval_s: float = DEFAULT_USAGE_INTERVAL_S
    # the whole environment, for ${VAR} in specs and for child processes; never printed
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = MappingProxyType(dict(os.environ if environ is None else environ))
        environment = _choice(environ, "ML_PIPELINES_ENV", ENVIRONMENTS, "local")
        dagster_home = environ.get("DAGSTER_HOME")
        return cls(
            environment=environment,
            executor=_choice(environ, "ML_PIPELINES_EXECUTOR", EXECUTORS, DEFAULT_EXECUTOR[environment]),
            home=Path(environ.get("ML_PIPELINES_HOME") or DEFAULT_HOME).resolve(),
            s3_bucket=environ.get("ML_PIPELINES_S3_BUCKET") or None,
            s3_prefix=(environ.get("ML_PIPELINES_S3_PREFIX") or DEFAULT_S3_PREFIX).strip("/"),
            dagster_home=Path(dagster_home).resolve() if dagster_home else None,
            serve=ServeSettings.from_environ(environ),
            extra_trusted_modules=_module_names(environ, "ML_PIPELINES_TRUSTED_MODULES"),
            reports_url=(environ.get("ML_PIPELINES_REPORTS_URL") or DEFAULT_REPORTS_URL).rstrip("/"),
            usage_interval_s=_non_negative(environ, "ML_PIPELINES_USAGE_INTERVAL", DEFAULT_USAGE_INTERVAL_S),
            environ=environ,
        )

    @property
    def variables(self) -> Mapping[str, str]:
        """What ${VAR} and {{ env.VAR }} in a spec resolve against: the environment, with
        ML_PIPELINES_HOME always set (the demo's landing folder lives under it)."""
        return {**self.environ, "ML_PIPELINES_HOME": str(self.home)}

    def require_bucket(self) -> str:
        if not self.s3_bucket:
            raise SettingsError("ML_PIPELINES_S3_BUCKET is not set; ML_PIPELINES_ENV=prod keeps everything in S3")
        return self.s3_bucket

    def child_env(self, **overrides: str) -> dict[str, str]:
        """The environment for a child process: ours, ML_PIPELINES_HOME resolved, quiet, plus overrides."""
        return {**self.environ, "ML_PIPELINES_HOME": str(self.home), **QUIET_ENV, **overrides}


def _choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = environ.get(name) or default
    if value not in choices:
        raise SettingsError(f"{name}={value!r} is not one of {', '.join(choices)}")
    return value


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None


def _non_negative(environ: Mapping[str, str], name: str, default: float) -> float:
    value = _number(environ, name, default)
    if not value >= 0:  # also refuses nan
        raise SettingsError(f"{name}={environ.get(name)!r} must be 0 or more")
    return value


def _module_names(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    """`pkg_a, pkg_b.sub` -> ("pkg_a", "pkg_b.sub"); anything but module names is an error."""
    names = [part.strip() for part in environ.get(name, "").split(",") if part.strip()]
    for module in names:
        if not MODULE_NAME.match(module):
            raise SettingsError(f"{name}: {module!r} is not a module name like 'my_pkg' or 'my_pkg.features'")
    return tuple(dict.fromkeys(names))


def _pid(environ: Mapping[str, str], name: str) -> int | None:
    raw = environ.get(name)
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise SettingsError(f"{name}={raw!r} is not a process id")
    return int(raw)


def _json_object(environ: Mapping[str, str], name: str) -> dict[str, Any]:
    raw = environ.get(name)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SettingsError(f"{name} must be a JSON object, got {type(value).__name__}")
    return value
