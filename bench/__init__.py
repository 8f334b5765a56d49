"""Benchmarks. Each one measures a baseline in the same run, prints the ratio, and
writes its figures to bench/results/<name>.json. Run them all: `python -m bench.run_all`."""
