"""Storage (ML_PIPELINES_ENV) and execution (ML_PIPELINES_EXECUTOR) are two settings: each
profile has a default executor, any storage runs with any executor, and a bad value names
its variable. The executor the Dagster definitions get follows the setting."""

from __future__ import annotations

import pytest

import dagster

from ml_pipelines.defs.resources import PRELOADED_MODULES, platform_executor
from ml_pipelines.settings import Settings, SettingsError


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, ("local", "in_process")),
        ({"ML_PIPELINES_ENV": "prod"}, ("prod", "k8s")),
        # one VM with services: prod storage, steps as local processes
        ({"ML_PIPELINES_ENV": "prod", "ML_PIPELINES_EXECUTOR": "multiprocess"}, ("prod", "multiprocess")),
        ({"ML_PIPELINES_ENV": "local", "ML_PIPELINES_EXECUTOR": "in_process"}, ("local", "in_process")),
        ({"ML_PIPELINES_ENV": "local", "ML_PIPELINES_EXECUTOR": "k8s"}, ("local", "k8s")),
    ],
)
def test_storage_and_executor_are_separate_settings(environ, expected):
    settings = Settings.from_env(environ)
    assert (settings.environment, settings.executor) == expected
    # the Dagster executor is Dagster's own of that name
    assert platform_executor(settings).name == expected[1]


@pytest.mark.parametrize(
    ("name", "value", "choices"),
    [
        ("ML_PIPELINES_EXECUTOR", "celery", "multiprocess, in_process, k8s"),
        ("ML_PIPELINES_ENV", "staging", "local, prod"),
    ],
)
def test_a_bad_value_names_its_variable_and_the_choices(name, value, choices):
    with pytest.raises(SettingsError, match=f"^{name}='{value}' is not one of {choices}$"):
        Settings.from_env({name: value})


def test_the_local_default_runs_steps_in_the_run_worker():
    assert platform_executor(Settings.from_env({})) is dagster.in_process_executor


def test_the_multiprocess_executor_forks_steps_from_a_forkserver_with_the_heavy_libraries_preloaded():
    executor = platform_executor(Settings.from_env({"ML_PIPELINES_EXECUTOR": "multiprocess"}))
    # what the executor is configured with: Dagster's own schema resolves it (an unknown key would fail here)
    resolved = executor.config_schema.resolve_config({})
    assert resolved.success, resolved.errors
    start_method = resolved.value["config"]["start_method"]
    assert list(start_method) == ["forkserver"]
    preloaded = start_method["forkserver"]["preload_modules"]
    assert preloaded == list(PRELOADED_MODULES)
    assert {"ml_pipelines.core.torch_model", "great_expectations", "bentoml"} <= set(preloaded)
