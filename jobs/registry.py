"""Job kinds: the table every worker runs from, gathered from each feature's job module."""
from __future__ import annotations

from jobs import accounts, certificates, housekeeping, inbox, lectures, payments, privacy, pushes, schools
from jobs.context import JobContext, JobRegistry

__all__ = ["JobContext", "JobRegistry", "build_registry"]

# Each feature's jobs module registers its own kinds (`register`); a new feature adds its module here.
FEATURES = (housekeeping, accounts, certificates, payments, pushes, inbox, schools, lectures, privacy)


def build_registry() -> JobRegistry:
    registry = JobRegistry()
    for feature in FEATURES:
        feature.register(registry)
    return registry
