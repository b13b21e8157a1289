"""Runs the project's CLIs as real child processes without paying TensorFlow's import each time.

Started once per test session (``CliRunner`` in tests/cli_harness.py). It imports TensorFlow,
Keras and the project's CLI modules (which define no flags and run no TensorFlow op at import),
then for each request read from stdin (one JSON line: module, args, cwd, env, stdout and stderr
paths) forks a child that runs ``python -m <module> <args>`` in-process and exits with its code.
Each child is a separate process: its exit code, stderr, files and a SIGKILL it sends itself
are those of the command, and every child parses its flags from scratch.
"""

import json
import os
import runpy
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["OFA_TF_ALLOCATOR"] = "system"   # no re-exec: the child must stay this process

import keras  # noqa: E402,F401
import tensorflow  # noqa: E402,F401

for name in ("ofa_tf.train", "ofa_tf.training.pipeline", "ofa_tf.search", "ofa_tf.nas.collect",
             "ofa_tf.export.exporter", "ofa_tf.export.qat", "ofa_tf.interop.import_torch",
             "ofa_tf.interop.reference_mapping", "android_bench.build_lut", "android_bench.validate",
             "android_bench.host", "ofa_tf.nas.accuracy_predictor", "ofa_tf.nas.pareto_plot", "torch"):
    try:
        __import__(name)
    except ImportError:
        pass

from ofa_tf.data import demo_arrays  # noqa: E402

demo_arrays()   # rendered once (numpy only), inherited by every child


def child(request) -> int:
    os.chdir(request["cwd"])
    sys.path.insert(0, request["cwd"])   # as python -m does
    os.environ.update(request.get("env", {}))
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.argv = [request["module"], *request["args"]]
    sys.modules.pop(request["module"], None)   # run it as __main__, not the preloaded copy
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        return 0
    except SystemExit as done:
        code = done.code
        if code is None:
            return 0
        if not isinstance(code, int):
            print(code, file=sys.stderr)
            return 1
        return code
    except BaseException:  # noqa: BLE001 (a bug in the command: show it as Python would)
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def main():
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = child(request)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    main()
