"""Benchmarks (`make bench`): numbers and ratios against a baseline measured in the same run, printed, never
asserted. Nothing here is collected by pytest (no `test_` modules)."""
