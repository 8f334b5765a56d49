"""connections: a connection URL is shown with every secret hidden, in every form that
libpq or SQLAlchemy accepts, and a URL that does not parse is never printed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ml_pipelines.connections import literal_connection_problem, redact_url, scrub, url_secrets
from ml_pipelines.spec import SqlSource

SECRET = "s3cretPW"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://ml:s3cretPW@db:5432/loans", "postgresql://ml:***@db:5432/loans"),
        ("postgresql://:s3cretPW@db/loans", "postgresql://:***@db/loans"),  # empty user
        (
            "postgresql://db/loans?password=s3cretPW&sslmode=require",
            "postgresql://db/loans?password=***&sslmode=require",
        ),
        ("postgresql://ml@db/loans?PassWord=s3cretPW", "postgresql://ml@db/loans?PassWord=***"),  # any case
        (
            "postgresql://db/loans?password=s3cretPW&password=s3cretPW2",
            "postgresql://db/loans?password=***&password=***",
        ),
        ("postgresql://ml@db/loans?sslpassword=s3cretPW", "postgresql://ml@db/loans?sslpassword=***"),
        ("snowflake://ml@acct/db?token=s3cretPW&api_key=s3cretPW", "snowflake://ml@acct/db?token=***&api_key=***"),
        ("mssql+pyodbc:///?odbc_connect=DRIVER%3Dx%3BPWD%3Ds3cretPW", "mssql+pyodbc:///?odbc_connect=***"),
        ("mysql://ml:s3cret%40PW@db/loans", "mysql://ml:***@db/loans"),  # an encoded '@'
        ("postgresql://ml:s3cret/PW@db/loans", "postgresql://ml:***@db/loans"),
        ("postgresql://ml:s3cret@PW@db/loans", "postgresql://<unparseable URL>"),  # an unencoded '@'
        ("postgresql://ml:s3cretPW@db:port/loans", "postgresql://<unparseable URL>"),
        ("postgresql://ml:s3cretPW@[::1/loans", "postgresql://<unparseable URL>"),
        ("ml:s3cretPW@db/loans", "<unparseable URL>"),
        ("sqlite:///data/loans.db", "sqlite:///data/loans.db"),
        ("{{ env.LOANS_DB_URL }}", "{{ env.LOANS_DB_URL }}"),
    ],
    ids=[
        "user-password", "empty-user", "query-password", "query-case", "query-repeated", "sslpassword",
        "token-and-key", "odbc-connect", "encoded-at", "slash", "unencoded-at", "bad-port", "bad-ipv6",
        "no-scheme", "sqlite", "template",
    ],
)
def test_redact_url_hides_every_secret(url, shown):
    assert redact_url(url) == shown
    for fragment in ("s3cret", "PW@"):
        assert fragment not in redact_url(url)


def test_url_secrets_and_scrub():
    url = "postgresql://ml:s3cret%40PW@db/loans?sslmode=require&token=t0ken"
    assert sorted(url_secrets(url)) == ["s3cret@PW", "t0ken"]
    message = f"could not connect to {url} as ml with s3cret@PW (s3cret%40PW), token t0ken"
    assert scrub(message, url) == (
        "could not connect to postgresql://ml:***@db/loans?sslmode=require&token=*** as ml with *** (***), token ***"
    )


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ml:s3cretPW@db/loans",
        "postgresql://db/loans?password=s3cretPW",
        "postgresql://ml:s3cret@PW@db/loans",
        "s3cretPW is no URL",
    ],
    ids=["password", "query-password", "unencoded-at", "unparseable"],
)
def test_literal_secret_in_a_spec_is_refused_without_echoing_it(url):
    assert literal_connection_problem(url) is not None
    with pytest.raises(ValidationError) as info:
        SqlSource.model_validate({"kind": "sql", "query": "select 1", "connection": url})
    error = info.value.errors()[0]
    assert error["loc"] == ("connection",)
    assert "{{ env.VAR }}" in error["msg"] or "not a valid SQLAlchemy URL" in error["msg"] or "%40" in error["msg"]
    # Dagster prints each error's input: it must be the redacted form
    assert "s3cret" not in str(error["input"]) and "s3cret" not in str(info.value)


def test_templates_and_urls_without_secrets_are_accepted():
    for url in ("{{ env.LOANS_DB_URL }}", "sqlite:///data/loans.db", "postgresql://ml@db/loans?sslmode=require"):
        assert literal_connection_problem(url) is None
        assert SqlSource(kind="sql", query="select 1", connection=url).connection == url
