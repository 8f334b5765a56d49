"""Connection URLs: the `{{ env.VAR }}` template, parsing, and rendering for display
with every secret hidden.

A spec names its database as `"{{ env.VAR }}"`; the URL, with its password, exists
only in the environment and in memory while the source is read. Anything printed
(asset metadata, the event log, errors, logs, the registry, model cards) goes through
`redact_url`, which renders with SQLAlchemy's own `render_as_string(hide_password=True)`,
masks query parameters that carry secrets (libpq accepts `?password=`), and prints
only the scheme of a URL it cannot parse, never the raw text.
"""

from __future__ import annotations

import re
from typing import Any

ENV_TEMPLATE = re.compile(r"^\{\{\s*env\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")
SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.\-]*)://")
# a query parameter whose name contains one of these carries a secret (case-insensitive):
# password, passwd, sslpassword, pwd, secret, token, api_key, access_key, sslkey, auth, signature
SECRET_KEY_PARTS = ("pass", "pwd", "secret", "token", "key", "credential", "auth", "sig")
# a value that embeds a secret of its own (`odbc_connect=...;PWD=...`)
SECRET_IN_VALUE = re.compile(r"(pass|pwd|secret|token|key)\w*\s*[=:]", re.IGNORECASE)
MASK = "***"
UNPARSEABLE = "<unparseable URL>"


class ConnectionUrlError(ValueError):
    """A connection URL cannot be used; the message holds no part of the URL but its scheme."""


def env_variable(value: str) -> str | None:
    """VAR for `{{ env.VAR }}`, else None."""
    match = ENV_TEMPLATE.match(value.strip())
    return match.group(1) if match else None


def _secret_key(key: str) -> bool:
    return any(part in key.lower() for part in SECRET_KEY_PARTS)


def _values(value: Any) -> tuple[str, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (str(value),)


def _scheme_only(url: str) -> str:
    match = SCHEME.match(url)
    return f"{match.group(1)}://{UNPARSEABLE}" if match else UNPARSEABLE


def parse_url(url: str):
    """The SQLAlchemy URL, or ConnectionUrlError naming only the scheme. A host holding '@'
    means an unencoded '@' in the password: SQLAlchemy and libpq both split at the first
    '@', so part of the password would become the host and be printed in errors."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url.strip())
    except Exception:  # noqa: BLE001 - ArgumentError, ValueError (a bad port), TypeError...
        raise ConnectionUrlError(f"{_scheme_only(url)} is not a valid SQLAlchemy URL") from None
    if parsed.host and "@" in parsed.host:
        raise ConnectionUrlError(
            f"{parsed.drivername}://{UNPARSEABLE}: the host part holds '@'; "
            "write an '@' in the user name or password as %40"
        )
    return parsed


def _hidden_keys(parsed) -> set[str]:
    """Query parameters whose value is a secret: by name, or by what the value holds."""
    return {
        key for key, value in parsed.query.items()
        if _secret_key(key) or any(SECRET_IN_VALUE.search(v) for v in _values(value))
    }


def _rendered_query(parsed) -> str:
    """`?k=v&...` with secret values as *** (SQLAlchemy would percent-encode the mask)."""
    from urllib.parse import quote_plus

    hidden = _hidden_keys(parsed)
    pairs = [
        f"{quote_plus(key)}={MASK if key in hidden else quote_plus(value)}"
        for key, values in parsed.query.items()
        for value in _values(values)
    ]
    return "?" + "&".join(pairs) if pairs else ""


def redact_url(url: str) -> str:
    """`url` for display: the password and secret query values as ***, the template as
    written, and only the scheme of a URL that does not parse."""
    if env_variable(url):
        return url.strip()
    try:
        parsed = parse_url(url)
    except ConnectionUrlError:
        return _scheme_only(url)
    return parsed.set(query={}).render_as_string(hide_password=True) + _rendered_query(parsed)


def url_secrets(url: str) -> list[str]:
    """The secret strings a URL holds: its password and its secret query values, longest
    first, so they can be scrubbed from a driver's error message."""
    try:
        parsed = parse_url(url)
    except ConnectionUrlError:
        return [url.strip()] if url.strip() else []
    found = [parsed.password] if parsed.password else []
    for key in _hidden_keys(parsed):
        found += [v for v in _values(parsed.query[key]) if v]
    return sorted(set(found), key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """`text` with the raw URL replaced by its redacted form and every secret it holds by ***."""
    from urllib.parse import quote, quote_plus

    text = text.replace(url, redact_url(url))
    for secret in url_secrets(url):
        for form in dict.fromkeys((secret, quote(secret, safe=""), quote_plus(secret))):
            text = text.replace(form, MASK)
    return text


def literal_connection_problem(value: str) -> str | None:
    """Why a spec's literal `source.connection` cannot be used, or None. A spec names
    `{{ env.VAR }}` or a URL without secrets (a spec is stored in full in the registry and
    shown in the UI). The reason never holds the URL's secrets."""
    if env_variable(value):
        return None
    try:
        parsed = parse_url(value)
    except ConnectionUrlError as exc:
        return str(exc)
    if parsed.password or _hidden_keys(parsed):
        return (
            f"{redact_url(value)} holds a password or secret; put the URL in an environment "
            'variable and write "{{ env.VAR }}"'
        )
    return None


class RefusedValue(str):
    """A refused value's redacted text, standing in for the value so that no error echoes
    it (Dagster prints each validation error's input), with the reason it was refused."""

    reason: str

    def __new__(cls, redacted: str, reason: str) -> RefusedValue:
        value = super().__new__(cls, redacted)
        value.reason = reason
        return value
