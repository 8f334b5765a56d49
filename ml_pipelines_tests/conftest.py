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


# The slowest test files first (seconds in a clean-clone `make test`, fixtures included). Workers
# take one file at a time (--dist loadfile, with --no-loadscope-reorder: xdist would otherwise
# order files by their number of tests, which put the one-test 85 s learning-loop file last and
# left the other worker idle while it ran). Longest first keeps both workers busy to the end.
SLOWEST_FIRST = (
    "serving/test_serving.py",  # 98, with the serving versions' training (serving/conftest.py)
    "components/test_dagster_dev.py",  # 96
    "prod/test_containers.py",  # 91
    # about 85 without its own training (100 with): after the file that trains, so it need not wait
    "serving/test_serving_lifecycle.py",
    "components/test_learning_loop_e2e.py",  # 84
    "components/test_experiment_history.py",  # 74
    "core/test_packaging.py",  # 61
    "core/test_snapshots.py",  # 59
    "serving/test_feedback_and_shadow.py",  # 59
    "components/test_pipelines.py",  # 53
    "ui/test_browser.py",  # 51
    "components/test_model_development.py",  # 51
    "prod/test_faults.py",  # 46
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    tests = os.path.dirname(__file__)
    items.sort(key=lambda item: rank.get(os.path.relpath(str(item.path), tests), len(rank)))  # stable
