import os

import pytest

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")


@pytest.fixture
def platform_root(tmp_path):
    """A fresh local registry, BentoML home and work directory."""
    root = tmp_path / "platform"
    root.mkdir()
    return root


# the real PostgreSQL cluster, moto S3 server and bucket fixtures (prod/ and core/test_registry.py)
pytest_plugins = ["ml_pipelines_tests.service_fixtures"]
