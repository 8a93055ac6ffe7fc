"""The one way faults are written: `NAME` or `NAME=RATE`, and how a label shows them.

Every option that injects faults (`sim`, `record`, `compare`, `probe`, and a `--dialect
D:FAULT[=RATE],…` spec) reads them here. A bare `NAME` means rate 1: the fault fires on
every request it can fire on.
"""

from __future__ import annotations

from collections.abc import Iterable

from traces.errors import TracesError
from traces.sim.faults.catalogue import FAULTS


def parse_faults(specs: Iterable[str]) -> dict[str, float]:
    """`NAME` / `NAME=RATE` options as a fault -> rate map; a bad one is a one-line
    `TracesError` naming the option as given."""
    faults: dict[str, float] = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        name = name.strip()
        if name not in FAULTS:
            known = ", ".join(FAULTS)
            raise TracesError(f"--fault {spec!r}: unknown fault {name!r} (known: {known})")
        try:
            rate = float(text) if sep else 1.0
        except ValueError:
            rate = float("nan")
        if not 0.0 <= rate <= 1.0:  # also false for NaN
            raise TracesError(
                f"--fault {spec!r}: expected NAME or NAME=RATE with RATE within [0, 1]"
            )
        faults[name] = rate
    return faults


def split_fault_list(text: str) -> list[str]:
    """The faults of a `D:FAULT[=RATE],…` spec, blanks left out."""
    return [part.strip() for part in text.split(",") if part.strip()]


def fault_label(faults: dict[str, float]) -> str:
    """`NAME=RATE,…` sorted by name: the faults as a target's label shows them. Written the
    way the options take them, so a label can be pasted back into `--dialect D:…`."""
    return ",".join(f"{name}={rate:g}" for name, rate in sorted(faults.items()))
