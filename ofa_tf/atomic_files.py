"""Writing outputs so that a reader (or a killed process) never leaves half a file behind.

An output is written under a hidden temporary name next to it, ``.<name>.tmp-<pid>`` (the
``suffix`` a saver needs, such as ``.keras``, kept at the end), then renamed over the real
name. Hidden names match no output glob (``*.keras``, ``*.tflite``). A process killed while
writing leaves its temporary behind; the next write of the same output removes the ones whose
process is gone, never a temporary of a process still running.

Fault injection (what tests/test_fault_injection.py uses to stop a CLI at each kind of write
and check that a re-run recovers): ``OFA_TF_KILL_AT=after:<regex>`` makes the process SIGKILL
itself right after the first completed write (atomic saves, journal appends, checkpoints) of a
file whose name matches ``<regex>``; ``during:<regex>`` kills it in the middle of that write,
with the temporary written but not yet renamed. ``OFA_TF_WRITE_LOG=<file>`` appends the path
of every completed write to ``<file>``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from typing import Callable

KILL_AT = "OFA_TF_KILL_AT"
WRITE_LOG = "OFA_TF_WRITE_LOG"


def _fault_point(when: str, path: str) -> None:
    """SIGKILL this process if ``OFA_TF_KILL_AT`` names this moment of writing ``path``."""
    spec = os.environ.get(KILL_AT)
    if spec:
        moment, _, pattern = spec.partition(":")
        if moment == when and re.search(pattern, os.path.basename(path.rstrip("/"))):
            os.kill(os.getpid(), signal.SIGKILL)


def write_done(path: str) -> None:
    """Mark ``path`` as completely and durably written (the fault-injection hooks act here)."""
    log = os.environ.get(WRITE_LOG)
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(os.path.abspath(path) + "\n")
    _fault_point("after", path)


def temporary_name(path: str, suffix: str = "", pid: int | None = None) -> str:
    """The hidden temporary name of ``path`` for process ``pid`` (default: this one)."""
    directory, name = os.path.split(path)
    stem = name[: len(name) - len(suffix)]
    return os.path.join(directory, f".{stem}.tmp-{os.getpid() if pid is None else pid}{suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's process
        return True
    return True


def remove_stale_temporaries(path: str, suffix: str = "") -> list[str]:
    """Remove the temporaries of ``path`` left by processes that no longer run; returns them."""
    directory, name = os.path.split(path)
    stem = name[: len(name) - len(suffix)]
    pattern = re.compile(rf"\.{re.escape(stem)}\.tmp-(\d+){re.escape(suffix)}(\.old)?")
    removed = []
    try:
        entries = os.listdir(directory or ".")
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            stale = os.path.join(directory, entry)
            if os.path.isdir(stale) and not os.path.islink(stale):
                shutil.rmtree(stale, ignore_errors=True)
            else:
                os.remove(stale)
            removed.append(stale)
    return removed


def atomic_save(path: str, save: Callable[[str], None], suffix: str = "") -> None:
    """``save(tmp)`` writes a file under a temporary name next to ``path``, which is then renamed
    to ``path``; on failure the temporary file is removed and ``path`` is untouched.

    ``suffix`` (an ending of ``path`` such as ``.weights.h5`` or ``.keras``) is kept at the end of
    the temporary name, for savers that choose the format by the file name.
    """
    if suffix and not path.endswith(suffix):
        raise ValueError(f"{path} does not end with {suffix}")
    remove_stale_temporaries(path, suffix)
    tmp = temporary_name(path, suffix)
    try:
        save(tmp)
        _fault_point("during", path)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    write_done(path)


def atomic_save_dir(path: str, build: Callable[[str], None]) -> None:
    """Build a directory (e.g. a SavedModel) under a temporary name with ``build(tmp)``, then
    swap it in for ``path``; a failed build leaves ``path`` as it was."""
    remove_stale_temporaries(path)
    tmp = temporary_name(path)
    old = f"{tmp}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        build(tmp)
        _fault_point("during", path)
        if os.path.exists(path):
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    write_done(path)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and a rename."""
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    atomic_save(path, write)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` via a temporary file and a rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


def append_line(path: str, line: str) -> None:
    """Append one line to a journal and make it durable (a kill loses at most a cut-off last
    line, which the journal's reader drops)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line if line.endswith("\n") else line + "\n")
        f.flush()
        os.fsync(f.fileno())
    write_done(path)
