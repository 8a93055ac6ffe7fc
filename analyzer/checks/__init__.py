"""Checks: pure functions over recorded data that say what went wrong, where, and whose fault.

A check reads plain records (`records`) loaded from the store (`loader`) and returns
`Finding`s; it never touches the database, so old traces can be re-checked whenever checks
improve. `registry` lists every check; `persist` replaces a run's findings atomically.
"""
