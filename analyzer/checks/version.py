"""The version of the checks, apart from the checks themselves: reading which findings are
stale (`traces compare`, `report`) needs the number, not the checks and their imports."""

CHECK_VERSION = 9
"""Bumped when a check changes what it reports; stored in each finding's evidence so old
findings can be told apart (re-run `traces analyze` to refresh them)."""
