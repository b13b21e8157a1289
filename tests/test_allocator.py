import os
import subprocess
import sys
import textwrap

import pytest

from ofa_tf.allocator import find_tcmalloc

SCRIPT = textwrap.dedent("""
    import sys
    from ofa_tf.allocator import active_allocator, reexec_with_tcmalloc
    reexec_with_tcmalloc()
    print(active_allocator(), sys.argv[1:])
""")


def _run(tmp_path, env_extra, *args):
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "OFA_TF_ALLOCATOR_CHECKED")}
    env.update(env_extra)
    result = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_reexec_preloads_tcmalloc_and_keeps_arguments(tmp_path):
    if find_tcmalloc() is None:
        pytest.skip("tcmalloc is not installed (apt-get install libtcmalloc-minimal4)")
    assert _run(tmp_path, {}, "a", "b c; d") == "tcmalloc ['a', 'b c; d']"


def test_opt_out_keeps_the_system_allocator(tmp_path):
    assert _run(tmp_path, {"OFA_TF_ALLOCATOR": "system"}, "x") == "system ['x']"


def test_module_invocation_is_preserved(tmp_path):
    if find_tcmalloc() is None:
        pytest.skip("tcmalloc is not installed (apt-get install libtcmalloc-minimal4)")
    package = tmp_path / "probe_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "OFA_TF_ALLOCATOR_CHECKED")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-m", "probe_pkg", "--flag=1"], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "tcmalloc ['--flag=1']"
