"""The DuckDB trace store: schema, migrations, documentation and the durable recorder."""

import importlib.util
import sys

# DuckDB 1.5 looks for pandas each time it converts a Python value of a statement's
# parameters; without pandas installed, each look is a failed import that scans sys.path
# again (two per value: an insert of 1,000 rows of 3 columns made 6,000). Marked absent once,
# here, before any store is opened, each look fails at once: such an insert is 14 times
# faster, and so are recording, importing and storing findings.
if "pandas" not in sys.modules and importlib.util.find_spec("pandas") is None:
    sys.modules["pandas"] = None  # type: ignore[assignment]
