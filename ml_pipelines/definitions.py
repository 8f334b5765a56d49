"""What Dagster loads: every component under defs/, with cross-cutting policies applied
once, to every asset (chain and monitoring alike):

- owners: every asset has one, even when its spec names none;
- code version: the package version plus the spec's hash, so an asset is stale when
  either changes.

The retry policy is the third: Dagster attaches a retry policy only where an asset is
defined, so PipelineContext.shared_settings gives every asset the same RETRY_POLICY
(components/policies.py), with fail-fast for deterministic errors.

Before Dagster parses any spec, core.spec_files checks the YAML text of every spec file
under the defs folder (alias bombs, duplicate keys). Dagster loads a code location as one
unit, so a bad spec file fails the whole location, as any other spec error does; these
checks make that failure immediate and name every bad file, line and key at once.

The component tree is built from the package's own defs module, not found through a
pyproject.toml above it (dg.ComponentTree.for_project): the package installed from its
wheel (the user-code image, docker/Dockerfile) has none. In a checkout both give the same
tree, rooted at the repository.
"""

from pathlib import Path

import dagster as dg

import ml_pipelines.defs
from ml_pipelines import __version__
from ml_pipelines.components.factory import SPEC_HASH_KEY
from ml_pipelines.components.policies import DEFAULT_OWNER
from ml_pipelines.core.errors import SpecFileError
from ml_pipelines.core.spec_files import check_spec_files, spec_files

DEFAULT_OWNERS = [DEFAULT_OWNER]


def with_policies(spec: dg.AssetSpec) -> dg.AssetSpec:
    spec_hash = spec.metadata.get(SPEC_HASH_KEY)
    return spec.replace_attributes(
        owners=spec.owners or DEFAULT_OWNERS,
        code_version=f"{__version__}-{spec_hash}" if spec_hash else spec.code_version,
    )


def apply_policies(definitions: dg.Definitions) -> dg.Definitions:
    return definitions.map_asset_specs(func=with_policies)


def build_checked_defs(tree: dg.ComponentTree) -> dg.Definitions:
    """What dg.load_from_defs_folder builds, after the YAML of every spec file passed its checks."""
    try:
        check_spec_files(spec_files(tree.defs_module_path))
    except SpecFileError as exc:
        raise dg.DagsterInvalidDefinitionError(f"refused spec files, not loaded:\n{exc}") from exc
    return apply_policies(tree.build_defs())


@dg.definitions
def defs() -> dg.Definitions:
    project_root = Path(__file__).resolve().parent.parent
    return build_checked_defs(dg.ComponentTree.from_module(ml_pipelines.defs, project_root))
