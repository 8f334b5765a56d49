"""`python -m ml_pipelines.cli ...`, the same as the `ml-pipelines` script."""

import sys

from ml_pipelines.cli import main

sys.exit(main())
