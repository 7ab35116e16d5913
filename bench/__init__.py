"""Reproducible benchmarks of relay; run ``.venv/bin/python bench/run.py --help``."""
