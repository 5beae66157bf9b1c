"""A temporary copy of the project with some files swapped, and pytest or a command run in it.

Why a copy and not `sys.path` tricks: tests that start a subprocess, and `python train.py`,
import datw.py from the folder they run in. Only a copy in which the student's files have
replaced the real ones tests the student's code everywhere, with no way to fall back silently on
the solution. The copy leaves out what is large or generated (data, runs, caches, .git); `run`
links data/ and runs/ back in, so a training run finds the data and its outputs stay.

Time limits: a student's endless loop must cost a grader seconds, not the rest of the class. Each
pytest run starts in a process group of its own (its DataLoader workers and the commands its
tests start included); a Watchdog reads the report plugin's progress and says when the tests of
one exercise have run longer than their limit; the whole group is then killed, and
run_exercises starts pytest again for the exercises the kill left unfinished.
"""
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
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

# Default limit, in seconds, on the tests of one exercise: the solution's pass within seconds,
# and a student's slow but finite loops (over positions, over triplets) get ample room.
TIMEOUT = 120
# Importing torch and the project and collecting the tests is nobody's exercise, and takes tens
# of seconds on a busy machine: it gets at least this long, whatever the exercises' limit.
LOADING_SECONDS = 60
POLL_SECONDS = 0.1  # how often a running pytest's progress is read
OWN_GROUP = {"process_group": 0} if os.name == "posix" else {}  # Windows: taskkill /T instead


@dataclass
class Report:
    """What one pytest run found: {nodeid: {"markers", "outcome", "reason", "seconds"}},
    collection errors, pytest's own output (for the student who wants the full traceback), the
    exercises that ran out of time, and whether the run was stopped (the time limit of one
    exercise or, with none timed out, of the time outside them: the last error says so)."""
    tests: dict
    errors: list
    output: str
    timed_out: list = field(default_factory=list)
    stopped: bool = False

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


class Watchdog:
    """Which exercises of a pytest run have used up their time, read from the plugin's progress.

    An exercise's time is the sum of its tests' (setup and teardown included); a test marked for
    two exercises counts for both. Only the running test can be stopped, so only its exercises
    run out. Time outside the watched exercises' tests (imports, collection, unmarked tests) has
    a limit of its own, `loading_limit`; when that runs out, the run is stopped as a whole.
    """

    def __init__(self, ids, timeout):
        self.ids, self.timeout, self.started = list(ids), timeout, time.time()
        self.loading_limit = max(timeout, LOADING_SECONDS)
        self.loading_ran_out = False

    def ran_out(self, progress):
        """The ids that ran out of time, or [] (every id, and loading_ran_out, when loading did)."""
        now = time.time()
        tests = progress["tests"] if progress else {}
        running = progress["running"] if progress else None
        spent = dict.fromkeys(self.ids, 0.0)
        in_tests = 0.0
        for nodeid, t in tests.items():
            seconds = t["seconds"] if not running or running["test"] != nodeid \
                else now - running["since"]
            watched = [i for i in self.ids if i in t["markers"]]
            for i in watched:
                spent[i] += seconds
            in_tests += seconds if watched else 0.0
        if now - self.started - in_tests > self.loading_limit:
            self.loading_ran_out = True
            return list(self.ids)
        markers = tests[running["test"]]["markers"] if running else []
        return [i for i in self.ids if i in markers and spent[i] > self.timeout]


def start_in_own_group(cmd, **popen_args):
    """Popen in a process group of its own, so that kill_tree reaches all it starts."""
    return subprocess.Popen(cmd, **popen_args, **OWN_GROUP)


def kill_tree(pid):
    """Kill the process `pid` (started in its own group) and every process it started."""
    if os.name == "posix":
        with contextlib.suppress(ProcessLookupError):  # the whole group has already ended
            os.killpg(pid, signal.SIGKILL)
    else:
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], capture_output=True)


def wait_or_kill(ended, pid, limit):
    """Wait for a process started in its own group; `ended()` polls it, `limit()` says when it
    must stop (true or a list of what ran out). Kills the group then, and on any interruption
    (Ctrl-C reaches only this process, not a group of its own) -> limit's answer, or None."""
    pause = 0.005  # short runs (the self-test's) end without waiting a whole poll
    try:
        while not ended():
            stop = limit()
            if stop:
                kill_tree(pid)
                return stop
            time.sleep(pause)
            pause = min(2 * pause, POLL_SECONDS)
        return None
    except BaseException:
        kill_tree(pid)
        raise


def _progress(path):
    """The plugin's report so far (written whole after each test), or None before the first."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def _read_report(path, output, watchdog=None, ran_out=None):
    if ran_out:  # the run was killed; the report so far holds the tests that had ended
        data = _progress(path) or {"tests": {}, "errors": [], "running": None}
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        if data["running"]:
            data["tests"][data["running"]["test"]].update(
                outcome="timed out", reason="still running when the time limit stopped it")
        if watchdog.loading_ran_out:  # no exercise's fault: the error says what happened
            data["errors"].append(
                f"pytest was stopped after {watchdog.loading_limit:g} s outside the exercises' "
                "tests (importing the project, collecting the tests): an endless loop at the "
                "top level of a module?")
            ran_out = []
        return Report(data["tests"], data["errors"], output, ran_out, stopped=True)
    if not path.exists():  # pytest stopped before the session ended, e.g. conftest failed
        return Report({}, [f"pytest ended before running any test:\n{output.strip()}"], output)
    data = json.loads(path.read_text())
    path.unlink()
    return Report(data["tests"], data["errors"], output)


def run_pytest(copy, args, watchdog=None):
    """pytest in a fresh interpreter inside the copy; what `check` uses. With a watchdog, the
    run is killed when an exercise runs out of time (Report.timed_out)."""
    copy = Path(copy)
    report, log = copy / ".exercises_report.json", copy / ".exercises_pytest.log"
    env = {**os.environ, **PYTEST_ENV, "EXERCISES_REPORT": str(report)}
    with open(log, "w") as out:
        proc = start_in_own_group([sys.executable, "-m", "pytest", *PYTEST_ARGS, *args],
                                  cwd=copy, env=env, stdout=out, stderr=subprocess.STDOUT)
        ran_out = wait_or_kill(lambda: proc.poll() is not None, proc.pid,
                               lambda: watchdog and watchdog.ran_out(_progress(report)))
        proc.wait()
    return _read_report(report, log.read_text(), watchdog, ran_out)


def run_pytest_forked(copy, args, watchdog=None):
    """pytest in a forked child of this process, inside the copy; what `selftest` uses. The
    watchdog as in run_pytest.

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
            os.setpgid(0, 0)  # a group of its own, for kill_tree (the parent sets it too)
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
    with contextlib.suppress(OSError):  # whichever of the two runs first makes the group
        os.setpgid(pid, pid)
    exit_code = []

    def ended():
        done, wait_status = os.waitpid(pid, os.WNOHANG)
        if done:
            exit_code.append(os.waitstatus_to_exitcode(wait_status))
        return bool(done)

    ran_out = wait_or_kill(ended, pid, lambda: watchdog and watchdog.ran_out(_progress(report)))
    if ran_out:
        os.waitpid(pid, 0)  # collect the killed child
    output = log.read_text()
    if exit_code == [CHILD_LEAKED]:
        raise RuntimeError(f"a forked pytest run used the real project, not its copy:\n{output}")
    return _read_report(report, output, watchdog, ran_out)


def run_exercises(runner, copy, files_of, timeout=TIMEOUT):
    """The tests of the exercises {id: [test files]} in one pytest run (`runner`: run_pytest or
    run_pytest_forked), each exercise's tests limited to `timeout` seconds. An exercise that runs
    out of time is stopped with the run, and pytest starts again for the exercises it left
    unfinished -> one Report of them all."""
    tests, errors, outputs, timed_out = {}, [], [], []
    todo = list(files_of)
    while todo:
        files = sorted({f for i in todo for f in files_of[i]})
        part = runner(copy, ["-m", " or ".join(todo), *files], Watchdog(todo, timeout))
        tests.update(part.tests)
        errors += part.errors
        outputs.append(part.output)
        timed_out += part.timed_out
        if not part.timed_out:
            break
        todo = [i for i in todo if i not in timed_out
                and any(t["outcome"] == "not run" for t in part.of(i).values())]
    return Report(tests, errors, "\n".join(outputs), timed_out)


def _inside(path, folder):
    if not path:
        return False
    return Path(path).resolve().is_relative_to(folder)


def preload_libraries():
    """Import the libraries the tests and tests/conftest.py use, once, before forking (speed
    only: a library missing here is imported by each child)."""
    import av, numpy, pytest, torch, torchvision  # noqa: F401
