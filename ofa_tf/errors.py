"""The errors a user can fix, as opposed to bugs.

Every CLI prints a ``UserError`` as one ``error: ...`` line and exits with its ``exit_code``
(2: bad input, a missing dependency, a refused overwrite); any other exception is a bug and
keeps its traceback (exit 1). Library code may raise plain ``ValueError`` for bad arguments:
a CLI decides deliberately, with ``user_input``, which steps check the user's input, and only
there does a ``ValueError`` become the user's error. No TensorFlow here: CLIs import this
before the slow imports.
"""

from __future__ import annotations

import contextlib
import json


class UserError(Exception):
    """Something the user can fix; the message names the flag, file or setting at fault."""
    exit_code = 2


class BadInput(UserError, ValueError):
    """A flag value or an input file that cannot be used."""


class MissingInput(UserError, FileNotFoundError):
    """A file or directory the user named does not exist."""


class MissingDependency(UserError, ImportError):
    """An optional package this step needs is not installed."""


class RefusedOverwrite(UserError, FileExistsError):
    """An output exists and replacing it was not asked for."""


class CheckFailed(UserError):
    """A produced artifact failed its check, so nothing was written (exit 1: the input was
    valid, the result is not)."""
    exit_code = 1


# Checked in order: subclasses before their bases.
_AS_USER_ERROR = ((FileExistsError, RefusedOverwrite), (FileNotFoundError, MissingInput),
                  (ImportError, MissingDependency), (OSError, BadInput), (ValueError, BadInput))


@contextlib.contextmanager
def user_input(what: str | None = None):
    """Inside, a ``ValueError`` (bad value), ``OSError`` (missing, unreadable or existing
    file) or ``ImportError`` (missing extra) is the user's: it is re-raised as the matching
    ``UserError``, its message prefixed with ``what`` when given."""
    try:
        yield
    except UserError:
        raise
    except (ValueError, OSError, ImportError) as err:
        kind = next(user for base, user in _AS_USER_ERROR if isinstance(err, base))
        message = _message(err)
        raise kind(f"{what}: {message}" if what else message) from None


def short_json(value, limit: int = 60) -> str:
    """``value`` as JSON, cut to ``limit`` characters, for naming a setting in an error."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _message(err: BaseException) -> str:
    """One line of ``err``'s text (its first non-empty line, or its type when it has none)."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines)[:600] if lines else type(err).__name__
