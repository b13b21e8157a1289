"""Shared fixtures: quiet TF logs, small supernets with non-trivial weights."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ofa_tf.arch.space import SearchSpace  # noqa: E402
from ofa_tf.networks import OFAMobileNetV3  # noqa: E402


def randomize_weights(net, seed=0):
    """Give every weight (BN statistics and kernel transforms included) a random,
    non-trivial value, so equality checks compare real signals rather than an
    initialisation that hides mistakes (identity transforms, unit BN)."""
    rng = np.random.default_rng(seed)
    for var in net.weights:
        if "float" not in str(var.dtype):
            continue
        shape, name = tuple(var.shape), var.path
        if "moving_variance" in name or "gamma" in name:
            value = rng.uniform(0.5, 1.5, shape)
        elif "moving_mean" in name or "beta" in name or "bias" in name:
            value = rng.normal(0.0, 0.2, shape)
        elif "transform" in name:
            value = np.eye(shape[0]) + rng.normal(0.0, 0.1, shape)
        else:
            fan_in = np.prod(shape[:-1]) if len(shape) > 1 else 1
            value = rng.normal(0.0, 1.5 / np.sqrt(max(fan_in, 1)), shape)
        var.assign(value.astype(np.float32))


@pytest.fixture(scope="session")
def tiny_space():
    return SearchSpace.tiny()


@pytest.fixture()
def tiny_net(tiny_space):
    net = OFAMobileNetV3(n_classes=10, space=tiny_space, seed=0)
    randomize_weights(net)
    return net


def images(batch, size, seed=0):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (batch, size, size, 3)).astype(np.float32)


# Ten well-separated colours: a task a tiny supernet learns in a few dozen steps, so its
# subnets give confident predictions (int8 agreement is only meaningful on such a model).
_PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                     [145, 30, 180], [70, 240, 240], [240, 50, 230], [128, 128, 0], [0, 0, 128]], float)


def colour_images(n, size=48, seed=0):
    """uint8 images [n, size, size, 3] of class-coloured noise, and their labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(_PALETTE), n)
    x = (_PALETTE[labels][:, None, None, :] * rng.uniform(0.7, 1.0, (n, 1, 1, 1))
         + rng.normal(0.0, 25.0, (n, size, size, 3)))
    return np.clip(x, 0, 255).astype(np.uint8), labels


@pytest.fixture(scope="session")
def colour_source():
    from ofa_tf.data import ArraySource

    x_train, y_train = colour_images(2000, seed=0)
    x_val, y_val = colour_images(300, seed=1)
    return ArraySource(x_train, y_train, x_val, y_val, [f"colour_{i}" for i in range(10)], name="colours")


# (CLI, faults injected, runs that recovered, stray temporaries) of every fault-injection test,
# gathered from the test reports: under pytest-xdist the tests run in worker processes, and
# only their reports reach the process that prints the summary.
_FAULT_TALLY: list = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if call.when == "call":
        from cli_harness import TALLY

        report.user_properties.extend(("fault_tally", tuple(entry)) for entry in TALLY)
        TALLY.clear()
    return report


def pytest_runtest_logreport(report):
    _FAULT_TALLY.extend(tuple(value) for key, value in report.user_properties if key == "fault_tally")


def pytest_terminal_summary(terminalreporter):
    """The fault-injection tally (tests/test_fault_injection.py), when those tests ran."""
    if _FAULT_TALLY:
        injected = sum(t[1] for t in _FAULT_TALLY)
        survived = sum(t[2] for t in _FAULT_TALLY)
        strays = sum(t[3] for t in _FAULT_TALLY)
        terminalreporter.write_sep("-", "fault injection (kill -9 at writes, then re-run)")
        for name, n, ok, stray in _FAULT_TALLY:
            terminalreporter.write_line(f"{name}: {n} faults injected, {ok} survived, {stray} stray files")
        terminalreporter.write_line(f"total: {injected} faults injected / {survived} survived, "
                                    f"{strays} stray files")


@pytest.fixture(scope="session")
def cli_runner():
    """The fork server that runs the project's CLIs as child processes (tests/cli_harness.py)."""
    from cli_harness import shared_runner

    return shared_runner()


def pytest_sessionfinish(session, exitstatus):
    from cli_harness import close_shared_runner

    close_shared_runner()


@pytest.fixture(scope="session")
def tiny_workdir(tmp_path_factory):
    """A tiny supernet (random, non-trivial weights) saved as a training run on the embedded
    demo data saves it: what collect, search and export read."""
    from ofa_tf.artifacts import save_supernet
    from ofa_tf.data import DatasetInfo

    net = OFAMobileNetV3(n_classes=10, space=SearchSpace.tiny(), seed=0)
    randomize_weights(net, seed=3)
    path = tmp_path_factory.mktemp("tiny_workdir")
    info = DatasetInfo(name="demo", class_names=[str(k) for k in range(10)], n_train=6000, n_val=1500,
                       mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    save_supernet(net, info, str(path))
    return path


@pytest.fixture
def torch_one_thread():
    """torch with one thread for a test: next to TensorFlow's thread pools on a small machine
    its forwards run several times faster."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)
