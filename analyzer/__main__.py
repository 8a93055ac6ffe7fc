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
        try:
            from analyzer.cli import main as run

            run()
        except KeyboardInterrupt:  # during the imports, or past the command line's own handlers
            interrupts.exit_interrupted()
        except Exception:
            # Raised by the interrupt in disguise (an ImportError from a C extension the
            # signal landed in, see `analyzer.cli.main`).
            if interrupts.interrupted():
                interrupts.exit_interrupted()
            raise
    except SystemExit as done:
        if done.code == interrupts.EXIT_CODE:
            # Interrupted, cleaned up, and its line written: leave now. Once a KeyboardInterrupt
            # has unwound through the interpreter's own frames, CPython ends its shutdown by
            # killing itself with SIGINT (exit -2 instead of 130), and nothing is left to do.
            interrupts.exit_now()
        raise


if __name__ == "__main__":
    main()
