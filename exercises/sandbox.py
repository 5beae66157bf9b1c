"""A temporary copy of the project with some files swapped, and pytest or a command run in it.

Why a copy and not `sys.path` tricks: tests that start a subprocess, and `python train.py`,
import datw.py from the folder they run in. Only a copy in which the student's files have
replaced the real ones tests the student's code everywhere, with no way to fall back silently on
the solution. The copy leaves out what is large or generated (data, runs, caches, .git); `run`
links data/ and runs/ back in, so a training run finds the data and its outputs stay.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from .manifest import PROJECT

LEFT_OUT = {".git", ".venv", "__pycache__", ".pytest_cache", "data", "runs"}
LINKED_BACK = ("data", "runs")  # for `run`: a command's data cache and outputs
# No .pytest_cache in the copy, and no third-party pytest plugins: the tests use none, and
# loading some costs seconds per run (hypothesis's plugin, when installed, rewrites ~90 modules).
# unraisableexception's five gc passes over a heap holding torch take a second per run.
PYTEST_ARGS = ["-q", "-p", "no:cacheprovider", "-p", "no:unraisableexception",
               "-p", "exercises.pytest_report"]
PYTEST_ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
              # Bytecode caches key on mtime and size, which a same-size rewrite within one
              # second does not change: a stale .pyc would run the previous variant.
              "PYTHONDONTWRITEBYTECODE": "1"}


# Exit codes of a forked child beyond pytest's own (0-5).
CHILD_FAILED, CHILD_LEAKED = 70, 71


@dataclass
class Report:
    """What one pytest run found: {nodeid: {"markers", "outcome", "reason"}}, collection errors,
    and pytest's own output (for the student who wants the full traceback)."""
    tests: dict
    errors: list
    output: str

    def of(self, exercise_id):
        """{nodeid: outcome entry} of the tests marked for one exercise."""
        return {n: t for n, t in self.tests.items() if exercise_id in t["markers"]}


def copy_project(dest, leave_out=()):
    """Copy the project into `dest` (which must not exist), without LEFT_OUT and `leave_out`."""
    skip = {Path(p).resolve() for p in leave_out}

    def ignore(folder, names):
        return [n for n in names if n in LEFT_OUT or n.endswith(".pyc")
                or (Path(folder) / n).resolve() in skip]

    shutil.copytree(PROJECT, dest, ignore=ignore)
    return Path(dest)


def write_files(root, files):
    """Write {relative path: source} into the copy at `root`."""
    for path, source in files.items():
        (Path(root) / path).write_text(source)


def link_back(copy):
    """Make the copy's data/ and runs/ the project's own (created if missing)."""
    for name in LINKED_BACK:
        (PROJECT / name).mkdir(exist_ok=True)
        os.symlink(PROJECT / name, Path(copy) / name, target_is_directory=True)


def test_files(exercise_id, root=PROJECT):
    """The test files that mark tests for an exercise (@pytest.mark.E4, marks=pytest.mark.E4)."""
    mark = re.compile(rf"\bmark\.{exercise_id}\b")
    return sorted(str(p.relative_to(root)) for p in (Path(root) / "tests").glob("test_*.py")
                  if mark.search(p.read_text()))


def _read_report(path, output):
    if not path.exists():  # pytest stopped before the session ended, e.g. conftest failed
        return Report({}, [f"pytest ended before running any test:\n{output.strip()}"], output)
    data = json.loads(path.read_text())
    path.unlink()
    return Report(data["tests"], data["errors"], output)


def run_pytest(copy, args):
    """pytest in a fresh interpreter inside the copy; what `check` uses."""
    report = Path(copy) / ".exercises_report.json"
    env = {**os.environ, **PYTEST_ENV, "EXERCISES_REPORT": str(report)}
    done = subprocess.run([sys.executable, "-m", "pytest", *PYTEST_ARGS, *args], cwd=copy,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return _read_report(report, done.stdout)


def run_pytest_forked(copy, args):
    """pytest in a forked child of this process, inside the copy; what `selftest` uses.

    The self-test runs pytest dozens of times. A fresh interpreter spends ~5 s importing torch
    and torchvision each time, a forked child none: it shares the libraries this process has
    imported (preload_libraries) and imports the project fresh from the copy. The project's own
    modules (this package included) are forgotten first, and the child checks afterwards that
    nothing it ran came from the real project, so the shortcut can only fail loudly. Linux and
    macOS only (os.fork).
    """
    copy = Path(copy).resolve()
    report, log = copy / ".exercises_report.json", copy / ".exercises_pytest.log"
    sys.stdout.flush()  # or the child would print what this process has buffered once more
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: it always leaves through os._exit, never returns
        status = CHILD_FAILED
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.chdir(copy)
            os.environ.update(PYTEST_ENV, EXERCISES_REPORT=str(report))
            sys.dont_write_bytecode = True
            sys.path[:] = [str(copy)] + [p for p in sys.path if not _inside(p or ".", PROJECT)]
            for name, module in list(sys.modules.items()):
                if _inside(getattr(module, "__file__", None), PROJECT):
                    del sys.modules[name]
            import pytest
            status = int(pytest.main([*PYTEST_ARGS, *args]))
            leaked = sorted(name for name, module in sys.modules.items()
                            if _inside(getattr(module, "__file__", None), PROJECT))
            if leaked:
                print(f"imported from the real project, not the copy: {leaked}")
                status = CHILD_LEAKED
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()  # os._exit skips Python's own flushing
            sys.stderr.flush()
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    output = log.read_text()
    if os.waitstatus_to_exitcode(wait_status) == CHILD_LEAKED:
        raise RuntimeError(f"a forked pytest run used the real project, not its copy:\n{output}")
    return _read_report(report, output)


def _inside(path, folder):
    if not path:
        return False
    return Path(path).resolve().is_relative_to(folder)


def preload_libraries():
    """Import the libraries the tests and tests/conftest.py use, once, before forking (speed
    only: a library missing here is imported by each child)."""
    import av, numpy, pytest, torch, torchvision  # noqa: F401
