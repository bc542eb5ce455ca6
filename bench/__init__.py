"""Benchmarks: each one reports ratios against a floor measured in the same run (see bench/README.md)."""
