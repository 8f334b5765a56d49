"""What Dagster loads: every component under defs/, with cross-cutting policies applied
once, to every asset (chain and monitoring alike):

- owners: every asset has one, even when its spec names none;
- code version: the package version plus the spec's hash, so an asset is stale when
  either changes.

The retry policy is the third: Dagster attaches a retry policy only where an asset is
defined, so PipelineContext.shared_settings gives every asset the same RETRY_POLICY
(components/policies.py), with fail-fast for deterministic errors.
"""

from pathlib import Path

import dagster as dg

from ml_pipelines import __version__
from ml_pipelines.components.factory import SPEC_HASH_KEY

DEFAULT_OWNERS = ["team:ml-platform"]


def with_policies(spec: dg.AssetSpec) -> dg.AssetSpec:
    spec_hash = spec.metadata.get(SPEC_HASH_KEY)
    return spec.replace_attributes(
        owners=spec.owners or DEFAULT_OWNERS,
        code_version=f"{__version__}-{spec_hash}" if spec_hash else spec.code_version,
    )


def apply_policies(definitions: dg.Definitions) -> dg.Definitions:
    return definitions.map_asset_specs(func=with_policies)


@dg.definitions
def defs() -> dg.Definitions:
    return apply_policies(dg.load_from_defs_folder(path_within_project=Path(__file__).parent))
