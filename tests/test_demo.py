import subprocess
import sys


def test_demo_runs_and_reports_exact_extraction():
    result = subprocess.run([sys.executable, "-m", "ofa_tf.demo", "--space=tiny", "--n=3", "--n_classes=10"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("search space tiny:")
    rows = [line for line in lines if line.startswith(("largest", "smallest", "sample"))]
    assert len(rows) == 5
    macs = {row.split()[0]: float(row.split()[-2]) for row in rows}
    assert macs["largest"] > macs["smallest"] > 0
    assert "max |logit difference| vs the supernet" in lines[-1]


def test_demo_rejects_a_bad_flag():
    result = subprocess.run([sys.executable, "-m", "ofa_tf.demo", "--space=huge"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "space" in result.stderr
