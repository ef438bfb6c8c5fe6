"""Benchmarks of `make bench` (`python -m bench`): they print figures and never fail on a time."""
