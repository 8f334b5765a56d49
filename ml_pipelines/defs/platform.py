"""The platform's own assets, beside the pipelines: platform/utilisation (components/utilisation.py)."""

import dagster as dg

from ml_pipelines.components.utilisation import utilisation_defs


@dg.definitions
def platform() -> dg.Definitions:
    return utilisation_defs()
