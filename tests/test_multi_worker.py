"""`--strategy=multi_worker` for real: two worker processes on this machine (TF_CONFIG with
free 127.0.0.1 ports), against one worker holding the same two replicas, and a chief killed
with SIGKILL mid-phase, then both workers re-run."""

import json
import os
import re
import signal
import socket
import subprocess
import sys

import h5py
import numpy as np
import pytest

from cli_harness import REPO

WORKER_TIMEOUT = 420   # seconds a worker may take (a few steps, one validation)
# 4 steps (one epoch), a checkpoint after step 2, no dropout (masks would be drawn per replica).
ARGS = ["--space=tiny", "--dataset=demo", "--phases=teacher", "--steps_per_epoch=4",
        f"--epochs_scale={1 / 120!r}", "--checkpoint_every=2", "--dropout=0", "--batch_size=4",
        "--image_size_list=32,40", "--n_calibration_images=16", "--calibration_batch_size=16",
        "--eval_batch_size=500", "--verbose=0", "--notensorboard"]


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _env(**extra):
    return {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OFA_TF_ALLOCATOR": "system", "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _start(args, env, log):
    out = open(log, "w")
    return subprocess.Popen([sys.executable, "-m", "ofa_tf.train", *ARGS, *args], env=env, cwd=REPO,
                            stdout=out, stderr=subprocess.STDOUT, text=True), out


def _finish(started, kill_after_first=None):
    """Wait for every process (all of them killed on timeout or error); returns exit codes.
    ``kill_after_first``: seconds the others may run on once one has ended (a worker whose
    peer died waits on its collectives until the coordination service gives up)."""
    codes = []
    try:
        for process, _ in started:
            timeout = WORKER_TIMEOUT if not codes or kill_after_first is None else kill_after_first
            try:
                codes.append(process.wait(timeout=timeout))
            except subprocess.TimeoutExpired:
                if kill_after_first is None:
                    raise
                process.kill()
                codes.append(process.wait())
    finally:
        for process, out in started:
            if process.poll() is None:
                process.kill()
                process.wait()
            out.close()
    return codes


def _two_workers(workdir, logs, chief_env=None, kill_after_first=None):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    started = []
    for index in range(2):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        extra = {"TF_CONFIG": config, "OFA_TF_WRITE_LOG": f"{logs}.writes{index}"}
        if index == 0 and chief_env:
            extra.update(chief_env)
        started.append(_start([f"--workdir={workdir}", "--strategy=multi_worker"], _env(**extra),
                              f"{logs}.out{index}"))
    return _finish(started, kill_after_first)


def _weights(workdir):
    out = {}
    with h5py.File(os.path.join(workdir, "supernet.weights.h5")) as f:
        f.visititems(lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) else None)
    return out


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


@pytest.mark.timeout(3 * WORKER_TIMEOUT + 300)
def test_two_workers_train_as_one_worker_with_two_replicas_and_resume_after_kill_9(tmp_path):
    # Two workers, one replica each; global batch 8.
    workers = str(tmp_path / "workers")
    codes = _two_workers(workers, tmp_path / "a")
    outs = [_read(tmp_path / f"a.out{i}") for i in range(2)]
    assert codes == [0, 0], outs
    for out in outs:
        assert "4 steps of 8 images" in out and "traced 1 time(s)" in out, out[-3000:]
    assert "written by the chief" in outs[1] and "written by the chief" not in outs[0]
    # Only the chief writes into the workdir; the other worker's checkpoints go to its scratch dir.
    chief_writes = _read(tmp_path / "a.writes0").split()
    other_writes = _read(tmp_path / "a.writes1").split()
    assert any(p.endswith("supernet.weights.h5") for p in chief_writes)
    assert other_writes and all(f"{os.sep}.scratch{os.sep}worker-1{os.sep}" in p for p in other_writes), other_writes
    assert json.loads(_read(os.path.join(workers, "teacher", "done.json")))["steps"] == 4

    # One worker holding the same two replicas (two logical CPUs): the same global batch, split
    # the same way (BN normalizes each replica's share, as in the reference's data-parallel runs).
    one = str(tmp_path / "one")
    [code] = _finish([_start([f"--workdir={one}", "--strategy=mirrored", "--cpu_devices=2"], _env(),
                             tmp_path / "one.out")])
    assert code == 0, _read(tmp_path / "one.out")[-3000:]
    expected, got = _weights(one), _weights(workers)
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-5, err_msg=name)

    # The chief SIGKILLed right after its step-2 checkpoint; the other worker, left waiting on
    # its collectives, ends (or is killed). Re-running both resumes from step 2 and ends where the
    # uninterrupted run ended.
    crashed = str(tmp_path / "crashed")
    codes = _two_workers(crashed, tmp_path / "b", chief_env={"OFA_TF_KILL_AT": r"after:^ckpt-2$"},
                         kill_after_first=90)
    assert codes[0] == -signal.SIGKILL and codes[1] != 0, codes
    assert not os.path.exists(os.path.join(crashed, "teacher", "done.json"))
    assert os.path.exists(os.path.join(crashed, "teacher", "ckpt-2.index"))
    codes = _two_workers(crashed, tmp_path / "c")
    outs = [_read(tmp_path / f"c.out{i}") for i in range(2)]
    assert codes == [0, 0], outs
    assert all("[teacher] resumed at step 2" in out for out in outs), outs
    resumed = _weights(crashed)
    for name in got:
        np.testing.assert_allclose(resumed[name], got[name], rtol=1e-5, atol=1e-5, err_msg=name)
    assert re.search(r"\| largest \| 40 \|", outs[0])
