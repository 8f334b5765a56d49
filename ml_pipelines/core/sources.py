"""Load a spec's source into a DataFrame. Every failure names the file or source.

Column names must be unique: a repeated header would otherwise become `age.1` (CSV)
or an unreadable file (parquet), and a generator or query returning two columns of one
name would make every later lookup ambiguous."""

from __future__ import annotations

import glob
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ml_pipelines.connections import ConnectionUrlError, env_variable, parse_url, redact_url, scrub
from ml_pipelines.core.errors import SourceError
from ml_pipelines.dotted import import_dotted
from ml_pipelines.spec import FileSource, Partitions, SchemaSpec, SqlSource, SyntheticSource

# pandas' read_csv renames a repeated header `age` to `age.1`, `age.2`, ...
MANGLED_HEADER = re.compile(r"^(?P<name>.*)\.(?P<copy>[1-9][0-9]*)$")
# read_csv options that decide how the header row is split, kept when re-reading it raw
HEADER_READ_OPTIONS = frozenset({
    "sep", "delimiter", "encoding", "encoding_errors", "compression", "quotechar", "quoting", "doublequote",
    "escapechar", "skiprows", "comment", "skipinitialspace", "engine", "dialect", "lineterminator",
    "storage_options",
})
PARQUET_DUPLICATE = re.compile(r"Multiple matches for FieldRef\.Name\((?P<name>[^)]*)\)")


@dataclass(frozen=True)
class LoadedSource:
    frame: pd.DataFrame
    description: str  # e.g. "csv data/*.csv (3 files)"
    files: tuple[str, ...] = ()


def describe_source(source: SyntheticSource | FileSource | SqlSource) -> str:
    if isinstance(source, SyntheticSource):
        return f"synthetic {source.generator}"
    if isinstance(source, FileSource):
        return f"{source.kind} {source.path}"
    return f"sql query on {redact_url(source.connection)}"


def load_source(
    source: SyntheticSource | FileSource | SqlSource,
    *,
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    partition_key: str | None = None,
) -> LoadedSource:
    if isinstance(source, SyntheticSource):
        loaded = _load_synthetic(source)
    elif isinstance(source, FileSource):
        loaded = _load_files(source, base_dir, env or {})
    else:
        loaded = _load_sql(source, env or {})
    check_unique_columns(loaded.frame, loaded.description)
    if source.partitions is not None and partition_key is not None:
        frame = select_partition(loaded.frame, source.partitions, partition_key, loaded.description)
        loaded = LoadedSource(frame, f"{loaded.description} [partition {partition_key}]", loaded.files)
    return loaded


def select_partition(frame: pd.DataFrame, partitions: Partitions, key: str, where: str) -> pd.DataFrame:
    if partitions.column not in frame.columns:
        raise SourceError(f"{where}: partition column {partitions.column!r} is missing")
    days = pd.to_datetime(frame[partitions.column], errors="coerce").dt.strftime("%Y-%m-%d")
    return frame.loc[days == key].reset_index(drop=True)


def _load_synthetic(source: SyntheticSource) -> LoadedSource:
    generator = import_dotted(source.generator)
    frame = generator(**source.params)
    if not isinstance(frame, pd.DataFrame):
        raise SourceError(f"generator {source.generator} returned {type(frame).__name__}, not a DataFrame")
    return LoadedSource(frame, describe_source(source))


ENV_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_variables(pattern: str, env: Mapping[str, str]) -> str:
    """Replace ${VAR} with its value; a variable that is not set is an error naming it."""

    def value(match: re.Match) -> str:
        name = match.group(1)
        if not env.get(name):
            raise SourceError(f"path {pattern!r}: environment variable {name} is not set")
        return env[name]

    return ENV_VARIABLE.sub(value, pattern)


def local_pattern(pattern: str, base_dir: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """The pattern as it is searched: variables expanded, and a relative local path joined to base_dir."""
    pattern = expand_variables(pattern, env or {})
    if "://" in pattern:
        return pattern
    path = Path(pattern)
    return str(base_dir / path if not path.is_absolute() and base_dir is not None else path)


def resolve_paths(pattern: str, base_dir: Path | None = None, env: Mapping[str, str] | None = None) -> list[str]:
    """Expand a local path or glob (relative to base_dir); s3:// URLs are expanded with fsspec."""
    pattern = local_pattern(pattern, base_dir, env)
    if "://" in pattern:
        import fsspec

        fs, _, paths = fsspec.get_fs_token_paths(pattern)
        protocol = pattern.split("://", 1)[0]
        return sorted(f"{protocol}://{p}" for p in paths)
    if glob.has_magic(pattern):
        return sorted(p for p in glob.glob(pattern) if Path(p).is_file())
    return [pattern] if Path(pattern).is_file() else []


def _load_files(source: FileSource, base_dir: Path | None, env: Mapping[str, str]) -> LoadedSource:
    files = resolve_paths(source.path, base_dir, env)
    if not files:
        searched = _searched(source.path, base_dir, env)
        raise SourceError(f"{source.kind} source {source.path!r}: no file matches this path{searched}")
    frames = [read_file(source.kind, f, source.read_options) for f in files]
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    description = f"{source.kind} {source.path} ({len(files)} file{'s' if len(files) > 1 else ''})"
    return LoadedSource(frame, description, tuple(files))


def _searched(pattern: str, base_dir: Path | None, env: Mapping[str, str]) -> str:
    """Where a pattern was looked for: the folder a relative path starts at, or the expanded pattern."""
    expanded = expand_variables(pattern, env)
    if "://" in expanded or Path(expanded).is_absolute():
        return f"; searched {expanded}" if expanded != pattern else ""
    folder, what = (base_dir, "the project root") if base_dir is not None else (Path.cwd(), "the current folder")
    return f"; searched {folder / expanded} (a relative path starts at {what}, {folder})"


def check_unique_columns(frame: pd.DataFrame, where: str) -> None:
    repeated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if repeated:
        raise SourceError(
            f"{where}: column {repeated[0]!r} appears more than once"
            + (f" (so do {', '.join(map(repr, repeated[1:]))})" if len(repeated) > 1 else "")
            + "; column names must be unique"
        )


def repeated_csv_headers(path: str, frame: pd.DataFrame, options: dict) -> list[str]:
    """Header names the file repeats (pandas has renamed the copies `name.1`, ...). Only when
    such a pair is present is the header row read again, raw, to tell a copy from a real `age.1`."""
    columns = [str(c) for c in frame.columns]
    renamed = [m.group("name") for c in columns if (m := MANGLED_HEADER.match(c)) and m.group("name") in columns]
    if not renamed or "names" in options:
        return []
    if options.get("header", "infer") not in ("infer", 0):
        return sorted(set(renamed))  # a header elsewhere: trust the renaming pattern
    raw_options = {k: v for k, v in options.items() if k in HEADER_READ_OPTIONS}
    header = [str(v) for v in pd.read_csv(path, header=None, nrows=1, dtype=str, **raw_options).iloc[0]]
    return sorted({name for name in header if header.count(name) > 1})


def read_file(kind: str, path: str, options: dict) -> pd.DataFrame:
    try:
        if kind == "csv":
            frame = pd.read_csv(path, **options)
            repeated = repeated_csv_headers(path, frame, options)
        else:
            frame = pd.read_parquet(path, **options)
            repeated = []
    except pd.errors.EmptyDataError as exc:
        raise SourceError(f"{path}: the file is empty") from exc
    except pd.errors.ParserError as exc:
        raise SourceError(f"{path}: malformed CSV: {exc}") from exc
    except (OSError, ValueError) as exc:
        duplicate = PARQUET_DUPLICATE.search(str(exc))
        if duplicate:
            repeated = [duplicate.group("name")]
        else:
            raise SourceError(f"{path}: cannot be read as {kind}: {exc}") from exc
    if repeated:
        raise SourceError(
            f"{path}: the header repeats column {repeated[0]!r}"
            + (f" (and {', '.join(map(repr, repeated[1:]))})" if len(repeated) > 1 else "")
            + "; column names must be unique"
            + (f" (pandas would have renamed the copy to '{repeated[0]}.1')" if kind == "csv" else "")
        )
    check_unique_columns(frame, path)
    if frame.empty:
        raise SourceError(f"{path}: the file has a header but no rows")
    return frame


def resolve_env_template(value: str, env: Mapping[str, str], field: str) -> str:
    name = env_variable(value)
    if name is None:
        return value
    if name not in env or not env[name]:
        raise SourceError(f"{field}: environment variable {name} is not set")
    return env[name]


# SQLAlchemy and the drivers may print the URL, or a part of the password, in their errors:
# every error below is re-raised `from None` with a scrubbed message, because Dagster
# records an exception's whole __cause__ / __context__ chain in the event log.


def _load_sql(source: SqlSource, env: Mapping[str, str]) -> LoadedSource:
    raw = resolve_env_template(source.connection, env, "source.connection")
    try:
        url = parse_url(raw)
    except ConnectionUrlError as exc:
        raise SourceError(f"source.connection: {exc}") from None
    where = f"sql source on {redact_url(raw)}"
    engine = _create_engine(url, raw, where)
    try:
        frame = _read_query(engine, source.query, raw, where)
    finally:
        engine.dispose()
    if frame.empty:
        raise SourceError(f"{where}: the query returned no rows")
    return LoadedSource(frame, where)


def _create_engine(url, raw: str, where: str):
    import sqlalchemy

    try:
        return sqlalchemy.create_engine(url)
    except (sqlalchemy.exc.NoSuchModuleError, ImportError) as exc:
        hint = "install its driver; for PostgreSQL, postgresql:// (psycopg 3) and postgresql+psycopg2:// come installed"
        problem = f"no driver for {url.drivername!r} ({scrub(str(exc), raw)}); {hint}"
    except Exception as exc:  # noqa: BLE001 - sqlalchemy raises several types for bad URLs
        problem = f"bad connection URL: {type(exc).__name__}: {scrub(str(exc), raw)}"
    raise SourceError(f"{where}: {problem}") from None


def _read_query(engine, query: str, raw: str, where: str) -> pd.DataFrame:
    import sqlalchemy

    try:
        with engine.connect() as connection:
            return pd.read_sql_query(sqlalchemy.text(query), connection)
    except Exception as exc:  # noqa: BLE001 - drivers raise their own types too (TypeError for a bad option)
        # pandas wraps a failed query's SQLAlchemyError in its own DatabaseError
        error = exc.__cause__ if isinstance(exc, pd.errors.DatabaseError) and exc.__cause__ else exc
        detail = f"{error.__class__.__name__}: {getattr(error, 'orig', None) or error}"
    raise SourceError(f"{where}: query failed: {scrub(detail, raw)}") from None


def coerce_declared_types(frame: pd.DataFrame, schema: SchemaSpec, where: str) -> pd.DataFrame:
    """Parse columns the spec declares as datetime (files carry them as text)."""
    frame = frame.copy(deep=False)
    for column, rule in schema.columns.items():
        if rule.type != "datetime" or column not in frame.columns:
            continue
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            continue
        try:
            frame[column] = pd.to_datetime(frame[column], errors="raise")
        except (ValueError, TypeError) as exc:
            raise SourceError(f"{where}: column {column!r} is declared datetime but does not parse: {exc}") from exc
    return frame
