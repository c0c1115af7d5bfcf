"""Benchmarks: each script runs alone (`python bench/<name>.py`); `bench/run.py` runs them all into one table."""
