"""Tests of tools/check_build.py on small fake trees, then on the real repository."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKER_PATH = REPO_ROOT / "tools" / "check_build.py"


def _load_checker():
    # tools/ is not a package: load the script by path (registered first, as
    # dataclasses looks its module up in sys.modules).
    spec = importlib.util.spec_from_file_location("tools_check_build", CHECKER_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


check_build = _load_checker()

# Targets start on lines 3, 13, 15, 17, 24, 26 and 32 (the tests quote these numbers).
CONSISTENT_BUILD = """\
load("@rules_python//python:defs.bzl", "py_binary", "py_library", "py_test")

py_library(  # line 3
    name = "ofa_tf",
    srcs = [
        "ofa_tf/__init__.py",
        "ofa_tf/layers/__init__.py",
        "ofa_tf/space.py",
    ],
    deps = [requirement("numpy")],
)

py_library(name = "android_bench", srcs = ["android_bench/__init__.py"], deps = [":ofa_tf"])

py_binary(name = "check", srcs = ["tools/check.py"], deps = ["//:ofa_tf", "@pypi//pyyaml"])

py_binary(  # line 17
    name = "bench_space",
    srcs = ["benchmarks/bench_space.py", "benchmarks/common.py"],
    main = "benchmarks/bench_space.py",
    deps = ["ofa_tf"],
)

py_library(name = "test_support", testonly = True, srcs = ["tests/conftest.py"])

py_test(  # line 26
    name = "test_space",
    srcs = ["tests/test_space.py"],
    deps = [":ofa_tf", ":test_support"],
)

py_test(name = "test_layers", srcs = ["tests/unit/test_layers.py"], deps = [":test_support"])
"""

# Line of a rule appended by _append_build (after one blank line).
APPENDED = CONSISTENT_BUILD.count("\n") + 2

TREE_FILES = (
    "ofa_tf/__init__.py",
    "ofa_tf/layers/__init__.py",
    "ofa_tf/space.py",
    "android_bench/__init__.py",
    "tools/check.py",
    "benchmarks/bench_space.py",
    "benchmarks/common.py",
    "tests/conftest.py",
    "tests/test_space.py",
    "tests/unit/test_layers.py",
    # Not looked into: none of these needs a target.
    "ofa_tf/__pycache__/space.py",
    "ofa_tf/.ipynb_checkpoints/space-checkpoint.py",
    "tools/build/lib/generated.py",
    "tools/ofa_tf.egg-info/stray.py",
    "tests/.hidden/test_hidden.py",
    # Only .py files count.
    "ofa_tf/README.md",
    "tests/data/test_image.png",
)


def _write(root: Path, rel: str, text: str = "") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A fake repository whose BUILD file matches its files."""
    for rel in TREE_FILES:
        _write(tmp_path, rel)
    _write(tmp_path, "BUILD", CONSISTENT_BUILD)
    return tmp_path


def _edit_build(root: Path, old: str, new: str) -> None:
    build = root / "BUILD"
    text = build.read_text(encoding="utf-8")
    assert old in text, old
    build.write_text(text.replace(old, new, 1), encoding="utf-8")


def _append_build(root: Path, text: str) -> None:
    with open(root / "BUILD", "a", encoding="utf-8") as f:
        f.write(text)


def test_consistent_tree_passes(tree):
    assert check_build.check_build(tree) == []


def test_accepts_str_path(tree):
    assert check_build.check_build(str(tree)) == []


# Each case: (change to the consistent tree, the exact list of problems expected).
CASES = {
    "missing_module": (
        lambda root: _write(root, "ofa_tf/subnet.py"),
        ["ofa_tf/subnet.py: not in the srcs of any py_library or py_binary"],
    ),
    "module_only_in_a_test": (
        lambda root: (
            _write(root, "android_bench/adb.py"),
            _edit_build(
                root,
                '"tests/test_space.py"],',
                '"tests/test_space.py", "android_bench/adb.py"],\n    main = "tests/test_space.py",',
            ),
        ),
        ["android_bench/adb.py: not in the srcs of any py_library or py_binary"],
    ),
    "missing_test_target": (
        lambda root: _write(root, "tests/test_subnet.py"),
        ["tests/test_subnet.py: needs a py_test named 'test_subnet' with it in srcs"],
    ),
    "test_target_named_differently": (
        lambda root: _edit_build(root, 'name = "test_layers"', 'name = "layers_test"'),
        ["tests/unit/test_layers.py: needs a py_test named 'test_layers' with it in srcs"],
    ),
    "test_helper_not_in_srcs": (
        lambda root: _write(root, "tests/helpers.py"),
        ["tests/helpers.py: not in the srcs of any target"],
    ),
    "nonexistent_src": (
        lambda root: _edit_build(root, '"ofa_tf/space.py",', '"ofa_tf/space.py", "ofa_tf/gone.py",'),
        ["BUILD:3: py_library 'ofa_tf': src 'ofa_tf/gone.py' does not exist"],
    ),
    "src_outside_repo": (
        lambda root: _edit_build(root, '"ofa_tf/space.py",', '"ofa_tf/space.py", "../x.py",'),
        ["BUILD:3: py_library 'ofa_tf': src '../x.py' is not relative to the repo root"],
    ),
    "dangling_dep": (
        lambda root: _edit_build(root, 'deps = [":ofa_tf"])', 'deps = [":ofa_tff"])'),
        ["BUILD:13: py_library 'android_bench': dep ':ofa_tff' names no target in BUILD"],
    ),
    "dangling_root_label_dep": (
        lambda root: _edit_build(root, '"//:ofa_tf"', '"//:nope"'),
        ["BUILD:15: py_binary 'check': dep '//:nope' names no target in BUILD"],
    ),
    "duplicate_name": (
        lambda root: _append_build(root, '\npy_library(name = "test_support", srcs = [])\n'),
        [f"BUILD:{APPENDED}: py_library 'test_support': duplicate target name (first defined at line 24)"],
    ),
    "glob": (
        lambda root: _append_build(root, '\npy_library(name = "data", srcs = glob(["data/*.py"]))\n'),
        [f"BUILD:{APPENDED}: glob() is not allowed; list the files"],
    ),
    "non_literal_srcs": (
        lambda root: _append_build(root, '\nSRCS = []\npy_library(name = "data", srcs = SRCS)\n'),
        [f"BUILD:{APPENDED + 1}: py_library 'data': srcs must be a literal list of strings"],
    ),
    "rule_in_comprehension": (
        lambda root: _append_build(root, '\n[py_library(name = n) for n in ["a"]]\n'),
        [
            f"BUILD:{APPENDED}: py_library must be a top-level call "
            "(no loops, comprehensions or assignments)"
        ],
    ),
    "no_name": (
        lambda root: _append_build(root, '\npy_library(srcs = [])\n'),
        [f'BUILD:{APPENDED}: py_library has no literal name = "..."'],
    ),
    "binary_without_main": (
        lambda root: _edit_build(root, 'main = "benchmarks/bench_space.py",', ""),
        ["BUILD:17: py_binary 'bench_space': needs main = \"...\" or exactly one src"],
    ),
    "main_not_in_srcs": (
        lambda root: _edit_build(root, 'main = "benchmarks/bench_space.py"', 'main = "benchmarks/x.py"'),
        ["BUILD:17: py_binary 'bench_space': main 'benchmarks/x.py' is not in srcs"],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_inconsistency_is_reported_once(tree, name):
    change, expected = CASES[name]
    change(tree)
    assert check_build.check_build(tree) == expected


def test_missing_build_file(tree):
    (tree / "BUILD").unlink()
    problems = check_build.check_build(tree)
    assert len(problems) == 1
    assert problems[0].startswith("BUILD: missing")


def test_syntax_error_names_the_line(tree):
    (tree / "BUILD").write_text(
        'py_library(\n    name = "a"\n    srcs = [],\n)\n', encoding="utf-8"
    )
    problems = check_build.check_build(tree)
    assert len(problems) == 1
    assert problems[0].startswith("BUILD:2: syntax error: "), problems


def test_several_problems_are_all_reported(tree):
    _write(tree, "ofa_tf/subnet.py")
    _write(tree, "tests/test_subnet.py")
    assert check_build.check_build(tree) == [
        "ofa_tf/subnet.py: not in the srcs of any py_library or py_binary",
        "tests/test_subnet.py: needs a py_test named 'test_subnet' with it in srcs",
    ]


def test_cli_exit_codes(tree):
    def run():
        return subprocess.run(
            [sys.executable, str(CHECKER_PATH), str(tree)],
            capture_output=True,
            text=True,
            check=False,
        )

    ok = run()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    _write(tree, "ofa_tf/subnet.py")
    bad = run()
    assert bad.returncode == 1
    assert bad.stdout.splitlines() == [
        "ofa_tf/subnet.py: not in the srcs of any py_library or py_binary"
    ]


def test_repo_build_file_matches_tree():
    assert check_build.check_build(REPO_ROOT) == []
