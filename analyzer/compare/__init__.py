"""`traces compare`: runs of several providers (or upstream hosts, or models) side by side,
with bootstrap intervals and the differences that are significant.

`build.build_comparison` is the entry point; `model.Comparison` is what it returns.
"""

import os

# numpy's BLAS (OpenBLAS) keeps a thread per core that spins between calls. The resampling's
# products are small (a block of draws × a few dozen columns), so those threads only took the
# core a resampling worker process runs on (the five groups of a million steps in two
# processes: 4.2-4.4 → 2.0-2.3 s of wall time, 5.0-5.3 → 2.3-2.6 s of CPU). One thread, unless
# the environment says otherwise; set here, before any module of this package imports numpy
# (none outside it does), since OpenBLAS reads it when numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
