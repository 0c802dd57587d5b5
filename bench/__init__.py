"""Benchmarks: ``python -m bench [scenario ...] [--quick]`` (see docs/performance.md).

Every scenario runs the system under test and its baseline in server processes of their own,
drives them from separate load-generator processes, alternates A/B and reports medians.
Nothing here runs in CI.
"""
