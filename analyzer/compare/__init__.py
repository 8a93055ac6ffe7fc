"""`traces compare`: runs of several providers (or upstream hosts, or models) side by side,
with bootstrap intervals and the differences that are significant.

`build.build_comparison` is the entry point; `model.Comparison` is what it returns.
"""
