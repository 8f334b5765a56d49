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


@pytest.fixture(scope="module")
def one_thread():
    """Training in a module runs on one thread: torch's, OpenMP's (HistGradientBoosting)
    and BLAS's. On two shared cores more threads only spin and wait, and timings do not
    depend on other load. The numbers do not change: core/test_selection and
    components/test_model_development got the same fold scores, metrics and holdout
    probabilities, bit for bit, with BLAS on its default two threads. Use it with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(previous)


# the real PostgreSQL cluster, moto S3 server and bucket fixtures (prod/ and core/test_registry.py)
pytest_plugins = ["ml_pipelines_tests.service_fixtures"]
