"""What `dagster asset materialize -m ml_pipelines_tests.prod.vm_defs` loads in
test_one_vm.py: the small credit_default spec with the platform's own resources and
executor (ml_pipelines.defs.resources), both chosen by the settings the process starts
with (ML_PIPELINES_ENV, ML_PIPELINES_EXECUTOR), as ml_pipelines.definitions gets them."""

import dagster as dg

from ml_pipelines_tests.prod.common import credit_spec, prod_pipeline_defs


@dg.definitions
def defs() -> dg.Definitions:
    return prod_pipeline_defs(credit_spec())
