"""Checks that the top-level Bazel BUILD file matches the Python files in the tree.

Usage: python tools/check_build.py [REPO_ROOT]

Prints one line per problem and exits 1 if there is any, 0 otherwise. The BUILD file is
parsed with Python's `ast` (Starlark BUILD files are Python syntax); it is never executed.

Rules enforced:
  * py_library / py_binary / py_test calls are top-level statements with a literal `name`
    and a literal list of strings as `srcs`; glob() is not allowed anywhere.
  * Every .py file under ofa_tf/, android_bench/, tools/ and benchmarks/ is in the srcs of
    a py_library or py_binary.
  * Every tests/**/test_*.py is in the srcs of a py_test named after the file's stem; any
    other .py file under tests/ (conftest.py, helpers) is in the srcs of some target.
  * Every listed src exists; `main`, when given, is one of the srcs.
  * Local deps (":name", "//:name" or "name") name a target of the BUILD file.
  * Target names are unique.
  * A py_binary or py_test has `main` or exactly one src.
Directories named __pycache__ or build, hidden ones and *.egg-info are not looked into.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import posixpath
import sys
from pathlib import Path

BUILD_FILE = "BUILD"
RULE_KINDS = ("py_library", "py_binary", "py_test")
EXECUTABLE_KINDS = ("py_binary", "py_test")
LIBRARY_KINDS = ("py_library", "py_binary")
MODULE_DIRS = ("ofa_tf", "android_bench", "tools", "benchmarks")
TESTS_DIR = "tests"


@dataclasses.dataclass
class Target:
    kind: str
    name: str
    line: int
    srcs: list[str] | None  # None: srcs is not a literal list (already reported)
    deps: list[str]
    main: str | None

    def where(self) -> str:
        return f"{BUILD_FILE}:{self.line}: {self.kind} '{self.name}'"


def _rule_kind(call: ast.Call) -> str | None:
    """Name of the called function: `py_test(...)` and `native.py_test(...)` -> "py_test"."""
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _contains_glob(node: ast.AST) -> bool:
    return any(
        isinstance(sub, ast.Call) and _rule_kind(sub) == "glob" for sub in ast.walk(node)
    )


def _string_list(node: ast.AST) -> list[str] | None:
    """The strings of a literal list of string constants, else None."""
    if not isinstance(node, ast.List):
        return None
    values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
    if len(values) != len(node.elts) or not all(isinstance(v, str) for v in values):
        return None
    return values


def _parse_target(call: ast.Call, kind: str, problems: list[str]) -> Target | None:
    kwargs = {kw.arg: kw.value for kw in call.keywords if kw.arg is not None}
    name_node = kwargs.get("name")
    if not (isinstance(name_node, ast.Constant) and isinstance(name_node.value, str)):
        problems.append(f"{BUILD_FILE}:{call.lineno}: {kind} has no literal name = \"...\"")
        return None
    target = Target(kind, name_node.value, call.lineno, [], [], None)

    if "srcs" in kwargs:
        srcs = _string_list(kwargs["srcs"])
        if srcs is None and not _contains_glob(kwargs["srcs"]):
            problems.append(f"{target.where()}: srcs must be a literal list of strings")
        target.srcs = None if srcs is None else [posixpath.normpath(s) for s in srcs]

    if "deps" in kwargs:
        deps_node = kwargs["deps"]
        if isinstance(deps_node, ast.List):
            # Non-string entries (e.g. requirement("numpy")) are left alone.
            target.deps = [
                e.value
                for e in deps_node.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            ]
        elif not _contains_glob(deps_node):
            problems.append(f"{target.where()}: deps must be a literal list")

    if "main" in kwargs:
        main_node = kwargs["main"]
        if isinstance(main_node, ast.Constant) and isinstance(main_node.value, str):
            target.main = posixpath.normpath(main_node.value)
        else:
            problems.append(f"{target.where()}: main must be a string literal")
    return target


def parse_build(text: str) -> tuple[list[Target] | None, list[str]]:
    """Parses BUILD text into targets plus the problems found in the file itself.

    The targets are None when the text is not valid syntax.
    """
    try:
        module = ast.parse(text, filename=BUILD_FILE)
    except SyntaxError as err:
        return None, [f"{BUILD_FILE}:{err.lineno}: syntax error: {err.msg}"]

    problems: list[str] = []
    top_level = {
        id(stmt.value)
        for stmt in module.body
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
    }
    targets = []
    calls = sorted(
        (n for n in ast.walk(module) if isinstance(n, ast.Call)),
        key=lambda n: (n.lineno, n.col_offset),
    )
    for call in calls:
        kind = _rule_kind(call)
        if kind == "glob":
            problems.append(f"{BUILD_FILE}:{call.lineno}: glob() is not allowed; list the files")
        elif kind in RULE_KINDS and id(call) not in top_level:
            problems.append(
                f"{BUILD_FILE}:{call.lineno}: {kind} must be a top-level call "
                "(no loops, comprehensions or assignments)"
            )
        elif kind in RULE_KINDS:
            target = _parse_target(call, kind, problems)
            if target is not None:
                targets.append(target)
    return targets, problems


def _local_dep_name(dep: str) -> str | None:
    """Target name for a label of this package (":x", "//:x", "x"); None for others."""
    if dep.startswith("//:"):
        return dep[3:]
    if dep.startswith(":"):
        return dep[1:]
    if dep.startswith(("//", "@")) or ":" in dep:
        return None
    return dep


def _check_targets(root: Path, targets: list[Target]) -> list[str]:
    problems = []
    first_line: dict[str, int] = {}
    for target in targets:
        first_line.setdefault(target.name, target.line)
    for target in targets:
        if first_line[target.name] != target.line:
            problems.append(
                f"{target.where()}: duplicate target name "
                f"(first defined at line {first_line[target.name]})"
            )
        for src in target.srcs or []:
            if posixpath.isabs(src) or src == ".." or src.startswith("../"):
                problems.append(f"{target.where()}: src '{src}' is not relative to the repo root")
            elif not (root / src).is_file():
                problems.append(f"{target.where()}: src '{src}' does not exist")
        for dep in target.deps:
            name = _local_dep_name(dep)
            if name is not None and name not in first_line:
                problems.append(f"{target.where()}: dep '{dep}' names no target in {BUILD_FILE}")
        if target.kind in EXECUTABLE_KINDS and target.srcs is not None:
            if target.main is not None and target.main not in target.srcs:
                problems.append(f"{target.where()}: main '{target.main}' is not in srcs")
            elif target.main is None and len(target.srcs) != 1:
                problems.append(f"{target.where()}: needs main = \"...\" or exactly one src")
    return problems


def _ignored_dir(name: str) -> bool:
    return (
        name.startswith(".")
        or name in ("__pycache__", "build")
        or name.endswith(".egg-info")
    )


def python_files(root: Path, top: str) -> list[str]:
    """Repo-relative POSIX paths of the .py files under root/top, ignored dirs pruned."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root / top):
        dirnames[:] = sorted(d for d in dirnames if not _ignored_dir(d))
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        found.extend(
            f"{rel_dir}/{f}"
            for f in sorted(filenames)
            if f.endswith(".py") and not f.startswith(".")
        )
    return found


def _check_coverage(root: Path, targets: list[Target]) -> list[str]:
    def srcs_of(kinds: tuple[str, ...]) -> set[str]:
        return {s for t in targets if t.kind in kinds for s in t.srcs or []}

    library_srcs = srcs_of(LIBRARY_KINDS)
    any_srcs = srcs_of(RULE_KINDS)
    test_srcs = {(t.name, s) for t in targets if t.kind == "py_test" for s in t.srcs or []}

    problems = []
    for top in MODULE_DIRS:
        problems.extend(
            f"{path}: not in the srcs of any py_library or py_binary"
            for path in python_files(root, top)
            if path not in library_srcs
        )
    for path in python_files(root, TESTS_DIR):
        stem = posixpath.splitext(posixpath.basename(path))[0]
        if stem.startswith("test_"):
            if (stem, path) not in test_srcs:
                problems.append(f"{path}: needs a py_test named '{stem}' with it in srcs")
        elif path not in any_srcs:
            problems.append(f"{path}: not in the srcs of any target")
    return problems


def check_build(repo_root: str | os.PathLike) -> list[str]:
    """Returns the problems of repo_root/BUILD against the tree, one line each."""
    root = Path(repo_root)
    build = root / BUILD_FILE
    if not build.is_file():
        return [f"{BUILD_FILE}: missing (expected a Bazel BUILD file at {root})"]
    targets, problems = parse_build(build.read_text(encoding="utf-8"))
    if targets is not None:
        problems += _check_targets(root, targets) + _check_coverage(root, targets)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "repo_root",
        nargs="?",
        default=str(Path(__file__).resolve().parents[1]),
        help="repository root holding the BUILD file (default: this script's repo)",
    )
    args = parser.parse_args(argv)
    problems = check_build(args.repo_root)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {BUILD_FILE}", file=sys.stderr)
        return 1
    print(f"{BUILD_FILE} matches the tree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
