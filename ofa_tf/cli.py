"""The shared start of the project's absl command lines.

Each CLI's ``main(argv)`` keeps only its own work: this runs it under tcmalloc when installed
(see ``ofa_tf/allocator.py``), refuses stray positional arguments, and keeps absl/TF logging
at WARNING unless ``--verbosity`` is given.
"""

from __future__ import annotations


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


# Errors that mean bad input or a bad environment (a missing file or optional package, a .tflite
# that failed verification: the exporter's ExportCheckError is a RuntimeError), not a bug.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, RuntimeError, ImportError)


def exit_code_of(body) -> int:
    """Run ``body()``; 0 when it returns, 2 after one ``error: <message>`` line on stderr when it
    raises one of USER_ERRORS (no traceback)."""
    import sys

    try:
        body()
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
