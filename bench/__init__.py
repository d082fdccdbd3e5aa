"""Benchmarks (run as scripts: python bench/<name>.py); results in bench/results/."""
