"""No secret leaks, end to end: a pipeline whose SQL source is `{{ env.LOANS_DB_URL }}`,
run in process on a Dagster instance on disk against a real PostgreSQL server, with the
password in every form that leaked before (a `?password=` query parameter, an empty
user, an unencoded '@', URLs that do not parse, a wrong password). Then every
file under the Dagster home and the platform root (registry, BentoML store, work
dirs, model cards), every captured log record and all of stdout/stderr are searched
for the secret: it is not there, while the redacted URL is."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy

from ml_pipelines.datasets.credit import generate
from ml_pipelines_tests.helpers import materialize
from ml_pipelines_tests.services import PostgresCluster
from ml_pipelines_tests.specs import make_spec, small_credit_attributes

pytestmark = pytest.mark.usefixtures("one_thread")

ROLE = "reader"
DATABASE = "loans_source"


def _secret(label: str) -> str:
    """A password fragment no file could hold by chance."""
    return f"{label}{secrets.token_hex(8)}"


PASSWORD = _secret("pw")  # the reader role's real password
WRONG = _secret("wrong")
AT_LEFT, AT_RIGHT = _secret("left"), _secret("right")  # "left@right": an unencoded '@'
UNPARSEABLE, NO_SCHEME = _secret("unparsed"), _secret("noscheme")
EVERY_SECRET = (PASSWORD, WRONG, AT_LEFT, AT_RIGHT, UNPARSEABLE, NO_SCHEME)


@pytest.fixture(scope="module")
def loans_db(postgres: PostgresCluster) -> str:
    """A database with a loans table that the `reader` role, with PASSWORD, may read;
    returns host:port."""
    admin_url = postgres.create_database(DATABASE)
    engine = sqlalchemy.create_engine(admin_url)
    try:
        generate(rows=3000, seed=7).to_sql("loans", engine, index=False)
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'"))
            connection.execute(sqlalchemy.text(f"GRANT SELECT ON loans TO {ROLE}"))
    finally:
        engine.dispose()
    return f"{postgres.host}:{postgres.port}"


def _spec():
    attributes = small_credit_attributes()
    attributes.pop("monitoring")
    attributes["source"] = {"kind": "sql", "query": "select * from loans", "connection": "{{ env.LOANS_DB_URL }}"}
    return make_spec(**attributes)


def _files_holding(folder: Path, needles: tuple[str, ...]) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path}: {n}" for n in needles if n.encode() in data]
    return found


def test_no_password_reaches_metadata_events_logs_or_registry(loans_db, tmp_path, monkeypatch, caplog, capfd):
    host = loans_db
    forms = {
        # form: (connection URL, the run succeeds, what its failure or raw_data metadata shows)
        "query parameter": (
            f"postgresql://{ROLE}@{host}/{DATABASE}?sslmode=disable&password={PASSWORD}", True,
            f"postgresql://{ROLE}@{host}/{DATABASE}?sslmode=disable&password=***",
        ),
        "empty user": (f"postgresql://:{PASSWORD}@{host}/{DATABASE}", False, f"postgresql://:***@{host}/{DATABASE}"),
        "unencoded @": (
            f"postgresql://{ROLE}:{AT_LEFT}@{AT_RIGHT}@{host}/{DATABASE}", False,
            "postgresql://<unparseable URL>: the host part holds '@'",
        ),
        "unparseable": (
            f"postgresql://{ROLE}:{UNPARSEABLE}@{host.split(':')[0]}:port/{DATABASE}", False,
            "postgresql://<unparseable URL> is not a valid SQLAlchemy URL",
        ),
        "no scheme": (
            f"{ROLE}:{NO_SCHEME}@{host}/{DATABASE}", False, "<unparseable URL> is not a valid SQLAlchemy URL",
        ),
        "wrong password": (
            f"postgresql+psycopg2://{ROLE}:{WRONG}@{host}/{DATABASE}", False,
            f"postgresql+psycopg2://{ROLE}:***@{host}/{DATABASE}: query failed: OperationalError",
        ),
    }
    home, root = tmp_path / "dagster_home", tmp_path / "platform"
    home.mkdir()
    root.mkdir()
    caplog.set_level(logging.DEBUG)
    spec = _spec()
    with dg.DagsterInstance.local_temp(tempdir=str(home)) as instance:
        for form, (url, succeeds, shown) in forms.items():
            monkeypatch.setenv("LOANS_DB_URL", url)
            run = materialize(spec, root, instance=instance)
            assert run.success is succeeds, (form, run.step_errors())
            if succeeds:
                metadata = run.result.asset_materializations_for_node("credit_default__raw_data")[0].metadata
                assert metadata["source"].value == f"sql source on {shown}"
                assert run.registry.get_alias(spec.name, "champion") is not None
            else:
                assert any(shown in error for error in run.step_errors()), (form, run.step_errors())
    captured = capfd.readouterr()
    assert (home / "history").is_dir() and any(root.rglob("record.json"))  # runs and a version were written
    leaks = _files_holding(home, EVERY_SECRET) + _files_holding(root, EVERY_SECRET)
    leaks += [f"log record: {n}" for n in EVERY_SECRET if n in caplog.text]
    leaks += [f"stdout/stderr: {n}" for n in EVERY_SECRET if n in captured.out + captured.err]
    assert leaks == []
