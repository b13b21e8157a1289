"""The phone, reached through the ``adb`` binary: pick a device, push, pull, run shell commands.

``adb shell`` joins its arguments into one command line for the device's shell, so every remote
argument is quoted here (``shlex.quote``): a model called ``my model;rm -rf x.tflite`` stays one
file name. Each way this can fail raises one ``AdbError`` whose message names the problem.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
from typing import Sequence

from ofa_tf.errors import UserError


class AdbError(UserError, RuntimeError):
    """adb is missing, no usable device, or an adb command failed or timed out."""


class AdbTimeoutError(AdbError):
    """An adb command did not finish in time."""


@dataclasses.dataclass(frozen=True)
class DeviceEntry:
    serial: str
    state: str          # "device", "unauthorized", "offline", ...


def find_adb(adb_path: str | None = None) -> str:
    """The adb executable: ``adb_path`` when given (must exist), else ``adb`` on PATH."""
    if adb_path:
        if not (os.path.isfile(adb_path) and os.access(adb_path, os.X_OK)):
            raise AdbError(f"adb not found at --adb={adb_path} (not an executable file)")
        return adb_path
    found = shutil.which("adb")
    if found is None:
        raise AdbError("adb not found on PATH: install the Android platform tools or pass --adb=/path/to/adb")
    return found


def quote_remote(argv: Sequence[str]) -> str:
    """One device shell command line that runs ``argv`` exactly, whatever the arguments hold."""
    return " ".join(shlex.quote(str(arg)) for arg in argv)


def parse_devices(output: str) -> list[DeviceEntry]:
    """Entries of ``adb devices`` output (header, daemon notices and blank lines skipped)."""
    entries = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) < 2 or line.startswith(("List of devices", "*")):
            continue
        entries.append(DeviceEntry(parts[0], parts[1]))
    return entries


class AdbDevice:
    """One connected, authorized device; every command runs with ``-s SERIAL`` and a timeout."""

    def __init__(self, adb_path: str | None = None, serial: str | None = None, timeout_s: float = 300.0):
        self.adb = find_adb(adb_path)
        self.timeout_s = timeout_s
        self.serial = self._choose(serial)

    # ------------------------------------------------------------ device choice
    def _choose(self, serial: str | None) -> str:
        entries = parse_devices(self._run(["devices"], timeout_s=30, what="adb devices").stdout)
        if serial is not None:
            entries = [e for e in entries if e.serial == serial]
            if not entries:
                raise AdbError(f"device {serial!r} is not connected (adb devices does not list it)")
        if not entries:
            raise AdbError("no Android device connected (adb devices lists none): plug one in and "
                           "enable USB debugging")
        if len(entries) > 1:
            raise AdbError("several devices connected (" + ", ".join(e.serial for e in entries)
                           + "): choose one with --serial")
        entry = entries[0]
        if entry.state == "unauthorized":
            raise AdbError(f"device {entry.serial} is unauthorized: accept the USB debugging prompt "
                           "on the phone, then retry")
        if entry.state == "offline":
            raise AdbError(f"device {entry.serial} is offline: reconnect it (or adb reconnect) and retry")
        if entry.state != "device":
            raise AdbError(f"device {entry.serial} is in state {entry.state!r}, not ready for commands")
        return entry.serial

    # ------------------------------------------------------------ commands
    def _run(self, args: Sequence[str], timeout_s: float | None = None, what: str = "") -> subprocess.CompletedProcess:
        command = [self.adb] + (["-s", self.serial] if getattr(self, "serial", None) else []) + list(args)
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        try:
            return subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AdbTimeoutError(f"{what or ' '.join(args[:2])} timed out after {timeout_s:g} s") from None

    def push(self, local: str, remote: str) -> None:
        """Copy ``local`` to ``remote`` (adb's sync protocol: no shell sees the names)."""
        if not os.path.isfile(local):
            raise AdbError(f"cannot push {local}: no such file")
        done = self._run(["push", local, remote], what=f"adb push {os.path.basename(local)}")
        if done.returncode != 0:
            raise AdbError(f"adb push {local} -> {remote} failed: {output_tail(done.stdout + done.stderr)}")

    def pull(self, remote: str, local: str) -> None:
        done = self._run(["pull", remote, local], what=f"adb pull {remote}")
        if done.returncode != 0:
            raise AdbError(f"adb pull {remote} failed: {output_tail(done.stdout + done.stderr)}")

    def shell(self, argv: Sequence[str], timeout_s: float | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``argv`` on the device (each argument quoted); with ``check``, a non-zero exit is an
        AdbError showing the output's tail."""
        done = self._run(["shell", quote_remote(argv)], timeout_s, what=f"adb shell {os.path.basename(str(argv[0]))}")
        if check and done.returncode != 0:
            raise AdbError(f"adb shell {argv[0]} exited with {done.returncode}: {output_tail(done.stdout + done.stderr)}")
        return done


def output_tail(text: str, lines: int = 15) -> str:
    """The last ``lines`` lines of a command's output, for error messages."""
    kept = text.strip().splitlines()[-lines:]
    return "\n".join(kept) if kept else "(no output)"
