"""The shared start and end of the project's absl command lines: one exit policy.

Each CLI's ``main(argv)`` keeps only its own work. ``run_absl_main`` runs it under tcmalloc
when installed (see ``ofa_tf/allocator.py``), defines the CLI's flags then (so importing a CLI
defines none, and one process may import several), keeps absl/TF logging at WARNING unless
``--verbosity`` is given, and applies the exit policy:

* a ``UserError`` (``ofa_tf.errors``: bad input, a missing dependency, a refused overwrite),
  a bad flag value and a stray positional argument end in one ``error: ...`` line on stderr,
  no traceback, exit 2 (``CheckFailed``: exit 1);
* anything else is a bug: its traceback is shown, exit 1.
"""

from __future__ import annotations

import sys

from ofa_tf.errors import BadInput, UserError


def exit_code_of(body) -> int:
    """Run ``body()``: its return value (0 for None), or after a ``UserError`` one
    ``error: <message>`` line on stderr and the error's exit code."""
    try:
        code = body()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return err.exit_code
    return 0 if code is None else int(code)


def _parse_flags(argv):
    """absl's flag parsing, with a bad or missing flag value reported as a user error."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


def run_absl_main(main, define_flags=None) -> None:
    """``app.run(main)`` after the tcmalloc re-exec and ``define_flags()``, under the exit policy."""
    from absl import app, flags, logging

    from ofa_tf.allocator import reexec_with_tcmalloc

    def checked_main(argv):
        def body():
            if len(argv) > 1:
                raise BadInput(f"unexpected arguments: {argv[1:]} (flags are written --name=value)")
            if not flags.FLAGS["verbosity"].present:
                logging.set_verbosity(logging.WARNING)
            return main(argv)

        return exit_code_of(body)

    reexec_with_tcmalloc()
    if define_flags is not None:
        define_flags()
    app.run(checked_main, flags_parser=_parse_flags)
