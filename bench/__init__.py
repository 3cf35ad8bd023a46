"""Benchmarks: run on demand, print figures; never part of the test suite."""
