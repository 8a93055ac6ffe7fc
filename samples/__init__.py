"""The sample tasks, suites, provider profiles, corpora and seed folders.

This folder is shipped inside the package as `traces.samples` (see `pyproject.toml`), so an
installed wheel carries it; `traces.sample_files` is the one place that finds it. Nothing
here is code the tool runs.
"""
