"""numpy for the comparison, its BLAS on one thread, the environment left as it was.

numpy's BLAS (OpenBLAS) keeps a thread per core that spins between calls. The resampling's
products are small (a block of draws × a few dozen columns), so those threads only took the
core a resampling worker process runs on (the five groups of a million steps in two
processes: 4.2-4.4 → 2.0-2.3 s of wall time, 5.0-5.3 → 2.3-2.6 s of CPU). OpenBLAS reads
`OPENBLAS_NUM_THREADS` once, when numpy loads it: the variable is set for that moment only
(unless the environment sets it), so the processes a comparison starts afterwards (the tools
of `compare --suite`, MCP servers) do not inherit a setting they never asked for. Every module
of this package takes numpy from here.
"""

import os

_THREADS = "OPENBLAS_NUM_THREADS"
_inherited = _THREADS in os.environ
os.environ.setdefault(_THREADS, "1")
try:
    import numpy as np
    import numpy.typing as npt
finally:
    if not _inherited:
        del os.environ[_THREADS]

__all__ = ["np", "npt"]
