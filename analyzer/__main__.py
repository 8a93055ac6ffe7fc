"""The `traces` console script (and `python -m analyzer`).

Deliberately tiny: Ctrl-C and SIGTERM are handled (`traces.interrupts`) before the command
line and its dependencies are imported, which takes long enough that a Ctrl-C often lands in
the middle of it. A process started by multiprocessing re-imports this module, not the CLI.
"""

from __future__ import annotations

from traces import interrupts


def main() -> None:
    """Handle interrupts, then run the command line."""
    interrupts.install()
    try:
        from analyzer.cli import main as run

        run()
    except KeyboardInterrupt:  # during the imports, or past the command line's own handlers
        interrupts.exit_interrupted()


if __name__ == "__main__":
    main()
