"""What Dagster loads: every component under defs/, with cross-cutting policies applied once."""

from pathlib import Path

import dagster as dg

DEFAULT_OWNERS = ["team:ml-platform"]


def _with_policies(spec: dg.AssetSpec) -> dg.AssetSpec:
    # every asset has an owner, even when a spec names none
    return spec if spec.owners else spec.replace_attributes(owners=DEFAULT_OWNERS)


@dg.definitions
def defs() -> dg.Definitions:
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    return loaded.map_asset_specs(func=_with_policies)
