"""Run a CLI under tcmalloc when it is installed.

TensorFlow on CPU allocates and frees large activation buffers every step; with
glibc's malloc these go back to the OS and fault in again, which costs 15-20 %
of a training step here (see BENCHMARKS.md). tcmalloc keeps them. It must be
loaded before the process starts, so a CLI calls :func:`reexec_with_tcmalloc`
first thing; it re-executes the same command once with ``LD_PRELOAD`` set.
Install it with ``apt-get install libtcmalloc-minimal4`` (Debian/Ubuntu).
"""

from __future__ import annotations

import glob
import os
import sys

_MARKER = "OFA_TF_ALLOCATOR_CHECKED"
_PATTERNS = ("/usr/lib/*/libtcmalloc_minimal.so.4", "/usr/lib/libtcmalloc_minimal.so.4",
             "/usr/lib/*/libtcmalloc.so.4", "/usr/local/lib/libtcmalloc*.so*")


def find_tcmalloc() -> str | None:
    for pattern in _PATTERNS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def active_allocator() -> str:
    """'tcmalloc' if it is preloaded into this process, else 'system'."""
    return "tcmalloc" if "tcmalloc" in os.environ.get("LD_PRELOAD", "") else "system"


def reexec_with_tcmalloc(argv: list[str] | None = None) -> None:
    """Re-execute this Python command with tcmalloc preloaded, once; no-op when it
    is already loaded, not installed, or ``OFA_TF_ALLOCATOR=system`` is set."""
    if os.environ.get("OFA_TF_ALLOCATOR", "tcmalloc") == "system" or os.environ.get(_MARKER):
        return
    if active_allocator() == "tcmalloc":
        return
    library = find_tcmalloc()
    if library is None:
        return
    env = dict(os.environ)
    env[_MARKER] = "1"
    env["LD_PRELOAD"] = ":".join(p for p in (library, env.get("LD_PRELOAD", "")) if p)
    argv = sys.argv if argv is None else argv
    module = _module_name()
    command = [sys.executable] + (["-m", module] + argv[1:] if module else argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, env)


def _module_name() -> str | None:
    """The module name when the process was started with ``python -m``."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None and spec.name != "__main__" else None
