"""Benchmarks: `python -m bench.compare` measures `worker` against a raw-SQL ceiling and its peers."""
