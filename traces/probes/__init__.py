"""Template probes: a fixed, versioned set of conversations sent to each provider.

`catalogue` holds the probes (pairs that differ in exactly one thing, and the planted
secret), `raw` renders them client-side for a host's `/completions` route, and `runner`
sends them and records each as a one-step run with origin `probe`. The read side
(`analyzer.probes`) turns the stored runs into fingerprints and verdicts.
"""
