"""core.sources: csv, parquet, globs and SQL load into a DataFrame; every failure
names the file or the source."""

from __future__ import annotations

import traceback
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy

from ml_pipelines.core.sources import (
    SourceError,
    coerce_declared_types,
    describe_source,
    load_source,
    resolve_env_template,
    select_partition,
)
from ml_pipelines.spec import FileSource, Partitions, SchemaSpec, SqlSource, SyntheticSource


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [25, 40, 61, 33],
            "income": [41000.5, None, 88000.0, 52000.25],
            "purpose": ["car", "home", "car", "other"],
            "applied_on": ["2026-01-01", "2026-01-01", "2026-01-02", "2026-01-03"],
        }
    )


def csv_source(path: str, **extra) -> FileSource:
    return FileSource(kind="csv", path=path, **extra)


def test_csv_round_trip(tmp_path, frame):
    path = tmp_path / "loans.csv"
    frame.to_csv(path, index=False)
    loaded = load_source(csv_source(str(path)))
    pd.testing.assert_frame_equal(loaded.frame, frame, check_dtype=False)
    assert loaded.files == (str(path),)
    assert loaded.description == f"csv {path} (1 file)"
    assert loaded.frame["income"].isna().sum() == 1


def test_relative_path_is_resolved_against_base_dir(tmp_path, frame):
    (tmp_path / "data").mkdir()
    frame.to_csv(tmp_path / "data" / "loans.csv", index=False)
    loaded = load_source(csv_source("data/loans.csv"), base_dir=tmp_path)
    assert len(loaded.frame) == 4
    assert loaded.files == (str(tmp_path / "data" / "loans.csv"),)


def test_read_options_are_passed_to_pandas(tmp_path, frame):
    path = tmp_path / "loans.csv"
    frame.to_csv(path, index=False, sep=";")
    loaded = load_source(csv_source(str(path), read_options={"sep": ";"}))
    assert list(loaded.frame.columns) == list(frame.columns)


def test_parquet(tmp_path, frame):
    path = tmp_path / "loans.parquet"
    frame.to_parquet(path, index=False)
    loaded = load_source(FileSource(kind="parquet", path=str(path)))
    pd.testing.assert_frame_equal(loaded.frame, frame, check_dtype=False)
    assert loaded.description.startswith("parquet ")


def test_glob_concatenates_files_in_name_order(tmp_path, frame):
    folder = tmp_path / "landing"
    folder.mkdir()
    frame.iloc[2:].to_csv(folder / "b.csv", index=False)
    frame.iloc[:2].to_csv(folder / "a.csv", index=False)
    (folder / "notes.txt").write_text("not data")
    loaded = load_source(csv_source(str(folder / "*.csv")))
    assert loaded.files == (str(folder / "a.csv"), str(folder / "b.csv"))
    assert loaded.description.endswith("(2 files)")
    pd.testing.assert_frame_equal(loaded.frame, frame, check_dtype=False)


def test_glob_with_no_match_names_the_pattern(tmp_path):
    with pytest.raises(SourceError, match=r"csv source '.*/nothing/\*\.csv': no file matches this path"):
        load_source(csv_source(str(tmp_path / "nothing" / "*.csv")))


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "absent.csv"
    with pytest.raises(SourceError) as info:
        load_source(csv_source(str(path)))
    assert str(path) in str(info.value)
    assert "no file matches" in str(info.value)


def test_a_relative_path_that_matches_nothing_names_the_folder_it_searched(tmp_path):
    """A spec's relative path starts at the project root; the error says so, and where it looked."""
    with pytest.raises(SourceError) as info:
        load_source(csv_source("data/absent.csv"), base_dir=tmp_path)
    message = str(info.value)
    assert message.startswith("csv source 'data/absent.csv': no file matches this path")
    assert f"searched {tmp_path / 'data' / 'absent.csv'}" in message
    assert f"starts at the project root, {tmp_path}" in message


def test_empty_file_names_the_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(SourceError) as info:
        load_source(csv_source(str(path)))
    assert str(info.value) == f"{path}: the file is empty"


def test_header_only_file_names_the_file(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("age,income,purpose\n")
    with pytest.raises(SourceError) as info:
        load_source(csv_source(str(path)))
    assert str(info.value) == f"{path}: the file has a header but no rows"


def test_malformed_csv_names_the_file_and_line(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text("age,income\n25,41000\n40,52000,extra,fields\n")
    with pytest.raises(SourceError) as info:
        load_source(csv_source(str(path)))
    message = str(info.value)
    assert message.startswith(f"{path}: malformed CSV:")
    assert "line 3" in message


def test_one_bad_file_in_a_glob_is_named(tmp_path, frame):
    frame.to_csv(tmp_path / "a.csv", index=False)
    (tmp_path / "b.csv").write_text("")
    with pytest.raises(SourceError, match=f"^{tmp_path / 'b.csv'}: the file is empty$"):
        load_source(csv_source(str(tmp_path / "*.csv")))


def test_corrupt_parquet_names_the_file(tmp_path):
    path = tmp_path / "corrupt.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(SourceError) as info:
        load_source(FileSource(kind="parquet", path=str(path)))
    assert str(info.value).startswith(f"{path}: cannot be read as parquet")


# ---------------------------------------------------------------- sql


@pytest.fixture
def sqlite_url(tmp_path, frame) -> str:
    url = f"sqlite:///{tmp_path / 'loans.db'}"
    engine = sqlalchemy.create_engine(url)
    try:
        frame.to_sql("loans", engine, index=False)
    finally:
        engine.dispose()
    return url


def test_sql_query_on_sqlite(sqlite_url, frame):
    query = "select * from loans where age > 30 order by age"
    loaded = load_source(SqlSource(kind="sql", query=query, connection=sqlite_url))
    assert loaded.frame["age"].tolist() == [33, 40, 61]
    assert list(loaded.frame.columns) == list(frame.columns)
    assert loaded.description == f"sql source on {sqlite_url}"


def test_sql_connection_from_env_template(sqlite_url):
    source = SqlSource(kind="sql", query="select count(*) as n from loans", connection="{{ env.LOANS_DB_URL }}")
    loaded = load_source(source, env={"LOANS_DB_URL": sqlite_url})
    assert loaded.frame["n"].tolist() == [4]
    with pytest.raises(SourceError, match="source.connection: environment variable LOANS_DB_URL is not set"):
        load_source(source, env={})


def test_sql_bad_query_names_the_source(sqlite_url):
    with pytest.raises(SourceError) as info:
        load_source(SqlSource(kind="sql", query="select * from no_such_table", connection=sqlite_url))
    message = str(info.value)
    assert message.startswith(f"sql source on {sqlite_url}: query failed")
    assert "no_such_table" in message


def test_sql_empty_result_names_the_source(sqlite_url):
    with pytest.raises(SourceError, match="the query returned no rows"):
        load_source(SqlSource(kind="sql", query="select * from loans where age > 500", connection=sqlite_url))


def test_sql_descriptions_show_the_template_or_the_redacted_url(sqlite_url):
    source = SqlSource(kind="sql", query="select count(*) as n from loans", connection="{{ env.LOANS_DB_URL }}")
    assert describe_source(source) == "sql query on {{ env.LOANS_DB_URL }}"
    # sqlite ignores the parameter (with a warning that names it, not its value)
    with pytest.warns(sqlalchemy.exc.SAWarning, match="'password'"):
        loaded = load_source(source, env={"LOANS_DB_URL": f"{sqlite_url}?password=s3cretPW"})
    assert loaded.description == f"sql source on {sqlite_url}?password=***"


def _error_text(exc: BaseException) -> str:
    """What Dagster records: the message, the traceback and the whole cause/context chain."""
    return "".join(traceback.format_exception(exc))


# nothing listens on port 1: each URL fails to connect at once, in its own way
FAILING_URLS = {
    "user-password": (
        "postgresql://ml:s3cretPW@127.0.0.1:1/loans",
        "sql source on postgresql://ml:***@127.0.0.1:1/loans: query failed: OperationalError",
    ),
    "empty-user": (
        "postgresql://:s3cretPW@127.0.0.1:1/loans",
        "sql source on postgresql://:***@127.0.0.1:1/loans: query failed",
    ),
    "query-password": (
        "postgresql+psycopg2://ml@127.0.0.1:1/loans?password=s3cretPW",
        "sql source on postgresql+psycopg2://ml@127.0.0.1:1/loans?password=***: query failed",
    ),
    "unencoded-at": (
        "postgresql://ml:s3cret@PW@127.0.0.1:1/loans",
        "source.connection: postgresql://<unparseable URL>: the host part holds '@'",
    ),
    "unparseable": (
        "postgresql://ml:s3cretPW@127.0.0.1:port/loans",
        "source.connection: postgresql://<unparseable URL> is not a valid SQLAlchemy URL",
    ),
    "missing-driver": (
        "mysql://ml:s3cretPW@127.0.0.1:1/loans",
        "sql source on mysql://ml:***@127.0.0.1:1/loans: no driver for 'mysql'",
    ),
}


@pytest.mark.parametrize(("url", "message"), list(FAILING_URLS.values()), ids=list(FAILING_URLS))
def test_sql_errors_name_the_redacted_url_and_hold_no_secret(url, message):
    source = SqlSource(kind="sql", query="select 1", connection="{{ env.DB }}")
    with pytest.raises(SourceError) as info:
        load_source(source, env={"DB": url})
    assert str(info.value).startswith(message), str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert "s3cret" not in _error_text(info.value)


def test_postgresql_scheme_has_its_driver():
    """SQLAlchemy 2.1 maps postgresql:// to psycopg 3, a dependency of the project."""
    engine = sqlalchemy.create_engine("postgresql://ml@127.0.0.1:1/loans")
    assert engine.dialect.driver == "psycopg"
    engine.dispose()


def test_env_template_leaves_plain_values_alone():
    assert resolve_env_template("sqlite:///x.db", {}, "source.connection") == "sqlite:///x.db"
    assert resolve_env_template("{{env.DB}}", {"DB": "sqlite://"}, "source.connection") == "sqlite://"


# ---------------------------------------------------------------- synthetic, partitions, types


def test_synthetic_generator_with_params():
    source = SyntheticSource(
        kind="synthetic", generator="ml_pipelines.datasets.credit:generate", params={"rows": 50, "seed": 1}
    )
    loaded = load_source(source)
    assert len(loaded.frame) == 50
    assert "defaulted" in loaded.frame.columns
    assert loaded.description == "synthetic ml_pipelines.datasets.credit:generate"


def not_a_frame(**_):
    return [1, 2, 3]


def test_generator_that_returns_no_dataframe_is_named():
    source = SyntheticSource(kind="synthetic", generator=f"{__name__}:not_a_frame")
    with pytest.raises(SourceError, match=f"generator {__name__}:not_a_frame returned list, not a DataFrame"):
        load_source(source)


def test_partition_selects_one_day(tmp_path, frame):
    path = tmp_path / "loans.csv"
    frame.to_csv(path, index=False)
    source = csv_source(str(path), partitions={"start_date": "2026-01-01", "column": "applied_on"})
    loaded = load_source(source, partition_key="2026-01-01")
    assert loaded.frame["age"].tolist() == [25, 40]
    assert loaded.description.endswith("[partition 2026-01-01]")


def test_missing_partition_column_is_named(frame):
    partitions = Partitions(start_date="2026-01-01", column="created")
    with pytest.raises(SourceError, match="csv x.csv: partition column 'created' is missing"):
        select_partition(frame, partitions, "2026-01-01", "csv x.csv")


def test_declared_datetime_columns_are_parsed(frame):
    schema = SchemaSpec.model_validate({"columns": {"applied_on": {"type": "datetime"}}})
    parsed = coerce_declared_types(frame, schema, "csv x.csv")
    assert pd.api.types.is_datetime64_any_dtype(parsed["applied_on"])
    assert not pd.api.types.is_datetime64_any_dtype(frame["applied_on"])  # the input is not modified
    bad = frame.assign(applied_on=["2026-01-01", "yesterday", "2026-01-02", "2026-01-03"])
    with pytest.raises(SourceError, match="csv x.csv: column 'applied_on' is declared datetime but does not parse"):
        coerce_declared_types(bad, schema, "csv x.csv")


def test_loading_does_not_modify_the_file(tmp_path, frame):
    path = tmp_path / "loans.csv"
    frame.to_csv(path, index=False)
    before = Path(path).read_bytes()
    load_source(csv_source(str(path)))
    assert Path(path).read_bytes() == before


def test_sql_database_that_cannot_be_opened_is_named(tmp_path):
    url = f"sqlite:///{tmp_path / 'no_such_dir' / 'loans.db'}"
    with pytest.raises(SourceError, match=r"^sql source on sqlite:///.*/no_such_dir/loans.db: query failed: "):
        load_source(SqlSource(kind="sql", query="select 1", connection=url))


# ---------------------------------------------------------------- repeated column names (issue 11)


def test_repeated_csv_header_names_the_column_and_file(tmp_path):
    path = tmp_path / "loans.csv"
    path.write_text("age,income,age,purpose,income\n30,1.0,31,car,2.0\n40,3.0,41,home,4.0\n")
    with pytest.raises(SourceError) as info:
        load_source(csv_source(str(path)))
    assert str(info.value) == (
        f"{path}: the header repeats column 'age' (and 'income'); column names must be unique "
        "(pandas would have renamed the copy to 'age.1')"
    )


def test_repeated_header_is_found_with_the_spec_read_options(tmp_path):
    path = tmp_path / "loans.csv"
    path.write_text("# exported\nage;x;age\n1;2;3\n")
    with pytest.raises(SourceError, match="the header repeats column 'age'"):
        load_source(csv_source(str(path), read_options={"sep": ";", "comment": "#"}))


def test_a_real_column_named_like_a_renamed_copy_is_kept(tmp_path):
    path = tmp_path / "loans.csv"
    path.write_text("age,age.1\n30,31\n")
    assert list(load_source(csv_source(str(path))).frame.columns) == ["age", "age.1"]


def test_repeated_parquet_column_names_the_column_and_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "loans.parquet"
    pq.write_table(pa.table([pa.array([1, 2]), pa.array([3, 4])], names=["age", "age"]), path)
    with pytest.raises(SourceError, match=f"^{path}: the header repeats column 'age'; column names must be unique$"):
        load_source(FileSource(kind="parquet", path=str(path)))


def frame_with_repeated_columns(**_):
    return pd.DataFrame([[1, 2, 3]], columns=["age", "income", "age"])


def test_generator_returning_repeated_columns_is_named():
    source = SyntheticSource(kind="synthetic", generator=f"{__name__}:frame_with_repeated_columns")
    with pytest.raises(SourceError, match=f"synthetic {__name__}:frame_with_repeated_columns: column 'age' appears "
                                          "more than once; column names must be unique"):
        load_source(source)


def test_query_returning_repeated_columns_is_named(sqlite_url):
    source = SqlSource(kind="sql", query="select age, income as age from loans", connection=sqlite_url)
    with pytest.raises(SourceError, match="column 'age' appears more than once"):
        load_source(source)
