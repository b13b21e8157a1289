"""The shared start of the project's absl command lines.

Each CLI's ``main(argv)`` keeps only its own work: this runs it under tcmalloc when installed
(see ``ofa_tf/allocator.py``), refuses stray positional arguments, and keeps absl/TF logging
at WARNING unless ``--verbosity`` is given. The search-side CLIs also turn bad input into
``error: <message>`` on stderr and exit code 2, no traceback (``absl_main`` + ``run_cli``).
"""

from __future__ import annotations

import sys
from typing import Callable

# Errors that mean bad input or a bad environment (missing file, optional package, a .tflite that
# failed verification: the exporter's ExportCheckError is a RuntimeError), not a bug.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, RuntimeError, ImportError)


def run_absl_main(main) -> None:
    """``app.run(main)`` after the tcmalloc re-exec, with the checks every CLI makes first."""
    from absl import app, flags, logging

    from ofa_tf.allocator import reexec_with_tcmalloc

    def checked_main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)
        return main(argv)

    reexec_with_tcmalloc()
    app.run(checked_main)


def exit_code_of(body: Callable[[], None]) -> int:
    """Run ``body``; 0 when it returns, 2 (after one ``error:`` line) on a USER_ERRORS exception."""
    try:
        body()
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def absl_main(body: Callable[[], None]) -> Callable:
    """An ``absl.app`` main for ``body``: refuses positional arguments, keeps TensorFlow's INFO
    logs quiet unless ``--verbosity`` is given, and turns USER_ERRORS into one ``error:`` line."""
    def main(argv):
        from absl import app, flags, logging

        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)
        return exit_code_of(body)

    return main


def run_cli(main: Callable) -> None:
    """Re-execute under tcmalloc when installed (before TensorFlow loads), then ``absl.app.run``."""
    from absl import app

    from ofa_tf.allocator import reexec_with_tcmalloc

    reexec_with_tcmalloc()
    app.run(main)
