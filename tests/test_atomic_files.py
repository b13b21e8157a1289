"""Atomic writes: hidden temporaries no output glob matches, stale ones of dead processes
removed on the next write of the same output (never a live process's), and a failed write
leaves the old file as it was."""

import glob
import os
import subprocess
import sys

import pytest

from ofa_tf.atomic_files import atomic_save, atomic_write_text, remove_stale_temporaries, temporary_name


def test_temporary_names_are_hidden_and_match_no_output_glob(tmp_path):
    out = str(tmp_path / "subnet-abc-r32-float32.keras")
    tmp = temporary_name(out, ".keras")
    assert os.path.basename(tmp) == f".subnet-abc-r32-float32.tmp-{os.getpid()}.keras"
    open(tmp, "w").close()
    assert glob.glob(str(tmp_path / "*.keras")) == [] and glob.glob(str(tmp_path / "*")) == []


def test_a_write_removes_stale_temporaries_of_its_output_only(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out = str(tmp_path / "supernet.weights.h5")
        stale = temporary_name(out, ".weights.h5", pid=int(dead))
        running = temporary_name(out, ".weights.h5", pid=live.pid)
        other = temporary_name(str(tmp_path / "other.weights.h5"), ".weights.h5", pid=int(dead))
        for path in (stale, running, other):
            open(path, "w").close()
        atomic_save(out, lambda tmp: open(tmp, "w").write("weights"), suffix=".weights.h5")
        assert open(out).read() == "weights"
        assert not os.path.exists(stale)                    # a dead process's leftover of this output
        assert os.path.exists(running) and os.path.exists(other)   # a live writer's, another output's
        assert remove_stale_temporaries(str(tmp_path / "other.weights.h5"), ".weights.h5") == [other]
    finally:
        live.kill()
        live.wait()


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    out = tmp_path / "report.json"
    atomic_write_text(str(out), "old")

    def failing(tmp):
        open(tmp, "w").write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_save(str(out), failing)
    assert out.read_text() == "old" and os.listdir(tmp_path) == ["report.json"]


def test_a_directory_output_is_swapped_in_whole(tmp_path):
    """A SavedModel-like directory: built under a hidden name, then swapped for the old one; a
    dead process's half-built directory is removed by the next build."""
    from ofa_tf.atomic_files import atomic_save_dir

    out = str(tmp_path / "subnet.saved_model")
    half_built = temporary_name(out, pid=2 ** 22 + 1)   # above Linux's default pid_max: never running
    os.makedirs(os.path.join(half_built, "variables"))

    def build(version):
        def write(tmp):
            os.makedirs(tmp)
            with open(os.path.join(tmp, "saved_model.pb"), "w") as f:
                f.write(version)
        return write

    atomic_save_dir(out, build("one"))
    atomic_save_dir(out, build("two"))
    assert open(os.path.join(out, "saved_model.pb")).read() == "two"
    assert os.listdir(tmp_path) == ["subnet.saved_model"]
