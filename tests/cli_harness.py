"""Running CLIs for the reliability tests: through the fork server (tests/cli_forkserver.py),
and the checks those tests share (one error line, no stray temporaries, a file snapshot)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPORARY = re.compile(r"\.tmp-\d+|\.partial$|\.write-test-|_temp$")
# (CLI, faults injected, runs that recovered from them, stray temporaries), filled by
# tests/test_fault_injection.py and printed at the end of the session (tests/conftest.py).
TALLY: list[tuple[str, int, int, int]] = []


@dataclasses.dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


class CliRunner:
    """One fork server; ``run(module, *args, cwd=..., env=...)`` runs a CLI in a new child."""

    def __init__(self):
        env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "OFA_TF_ALLOCATOR": "system", "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.process = subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "cli_forkserver.py")],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                        cwd=REPO)
        ready = self.process.stdout.readline()
        assert json.loads(ready) == {"ready": True}, ready
        self.scratch = tempfile.mkdtemp(prefix="cli-runs-")
        self.count = 0

    def run(self, module: str, *args: str, cwd: str, env: dict | None = None) -> Run:
        self.count += 1
        out = os.path.join(self.scratch, f"{self.count}.out")
        err = os.path.join(self.scratch, f"{self.count}.err")
        request = {"module": module, "args": list(args), "cwd": str(cwd), "env": env or {},
                   "stdout": out, "stderr": err}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reply = json.loads(self.process.stdout.readline())
        with open(out, encoding="utf-8", errors="replace") as f_out, \
                open(err, encoding="utf-8", errors="replace") as f_err:
            return Run(reply["returncode"], f_out.read(), f_err.read())

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


_SHARED: CliRunner | None = None


def shared_runner() -> CliRunner:
    """The session's one fork server, started on first use (closed by tests/conftest.py)."""
    global _SHARED
    if _SHARED is None:
        _SHARED = CliRunner()
    return _SHARED


def close_shared_runner() -> None:
    global _SHARED
    if _SHARED is not None:
        _SHARED.close()
        _SHARED = None


def run_cli(module: str, *args: str, cwd=None, env: dict | None = None) -> Run:
    """``python -m module args`` as a child of the shared fork server (TensorFlow imported once
    per session, not once per run); the result has ``returncode``, ``stdout`` and ``stderr``."""
    return shared_runner().run(module, *map(str, args), cwd=cwd or os.getcwd(), env=env)


def error_lines(run: Run) -> list[str]:
    return [line for line in run.stderr.splitlines() if line.startswith("error:")]


def snapshot(root) -> dict:
    """relative path -> bytes (files) or None (directories), everything under ``root``."""
    out = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(directory, name), root)] = None
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def stray_temporaries(root) -> list[str]:
    return sorted(p for p in snapshot(root) if TEMPORARY.search(os.path.basename(p)))
