"""Errors a retry cannot fix: bad data, a bad spec, a checksum mismatch, a failed gate.

Every deterministic error in core subclasses InputError, so the orchestrator needs
one `except InputError` to fail a step at once, with its message, instead of
retrying it (components/policies.py). InputError is a ValueError, so callers that
catch ValueError keep working.
"""

from __future__ import annotations


class InputError(ValueError):
    """Deterministic: the same input fails the same way; the message names the field, column or file."""


class SpecFileError(InputError):
    """A spec file's YAML is refused before it is parsed (alias bomb, duplicate key); the message names the file."""


class SourceError(InputError):
    """The source could not be read; the message names the file or query."""


class SchemaViolation(InputError):
    """Rows break the spec's schema and the schema says on_failure: block."""


class FeatureError(InputError):
    """A feature cannot be built; the message names the column."""


class ModelError(InputError):
    """A candidate model cannot be built from its spec."""


class SelectionError(InputError):
    """No candidate can be selected (all failed or broke a limit)."""


class MetricError(InputError):
    """A metric cannot be computed on these labels or predictions."""


class GateFailed(InputError):
    """The promotion gate did not pass, so the candidate is not packaged."""


class NoChampion(InputError):
    """The pipeline has no champion (or the champion lacks what the caller needs)."""


class UntrustedArtifactError(InputError):
    """A stored model holds types outside the trusted set; it is never loaded."""


class RegistryError(InputError):
    """A registry operation is not allowed or names something that does not exist."""


class ChecksumError(RegistryError):
    """An artifact's bytes do not match the sha256 in its version record."""


class SnapshotError(RegistryError):
    """What a version was built from is missing, was collected, or cannot be stored or read back exactly."""
