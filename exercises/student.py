"""The student's side: `start` writes the work folder, `check` tests it, `run` runs a command
with it.

The work folder (my_exercises/ by default, ignored by git) holds the student's copies of the
files with targets, side by side under their own names (datw.py, sdd.py, rkd.py, reading.py,
...), and started.toml, the list of exercises they were started for.
"""
import re
import subprocess
import sys
import tempfile
import time
import tomllib
import traceback
from pathlib import Path

from . import sandbox
from .manifest import PROJECT
from .skeleton import variant

WORK_DIR = PROJECT / "my_exercises"
STARTED = "started.toml"
SHOWN_FAILURES = 3  # failing tests listed per exercise; --verbose shows pytest's whole output


class StudentError(Exception):
    """Something the student can fix; the message says what."""


def start(manifest, ids, work_dir=WORK_DIR):
    """Write the skeletons of the chosen exercises (all by default) into a new work folder."""
    work_dir = Path(work_dir)
    if work_dir.exists():
        raise StudentError(f"{work_dir} already exists, and start never overwrites your work. "
                           "Keep going with `python -m exercises check`, or start afresh in "
                           "another folder: python -m exercises start --dir <new folder>.")
    chosen = manifest.select(ids)
    files = variant(manifest, stripped=chosen)
    work_dir.mkdir(parents=True)
    for path in dict.fromkeys(p for ex in chosen for p in ex.paths):
        ids_here = ", ".join(ex.id for ex in chosen if path in ex.paths)
        header = (f"# Your copy of {path} for {ids_here}, written by python -m exercises start.\n"
                  "# Write each body that raises NotImplementedError; test with: "
                  "python -m exercises check\n")
        (work_dir / Path(path).name).write_text(header + files[path])
    ids_toml = ", ".join(f'"{ex.id}"' for ex in chosen)
    (work_dir / STARTED).write_text(f"# Written by python -m exercises start; check reads it.\n"
                                    f"exercises = [{ids_toml}]\n")
    print(f"Started {', '.join(ex.id for ex in chosen)} in {work_dir}/:")
    for ex in chosen:
        files_here = ", ".join(Path(p).name for p in ex.paths)
        print(f"  {ex.id:4s} {ex.minutes:3d} min  {ex.title}  ({files_here})")
    print("Read EXERCISES.md first; test your work with: python -m exercises check "
          f"{chosen[0].id}")


def started(manifest, work_dir):
    """The exercises this work folder was started for."""
    record = Path(work_dir) / STARTED
    if not record.exists():
        raise StudentError(f"no {record}: start the exercises first with `python -m exercises "
                           "start` (or pass the folder you started them in with --dir).")
    with open(record, "rb") as f:
        return manifest.select(tomllib.load(f)["exercises"])


def student_files(manifest, work_dir):
    """{project path: the student's copy} for each file the work folder has."""
    return {path: Path(work_dir) / Path(path).name for path in manifest.paths
            if (Path(work_dir) / Path(path).name).exists()}


def syntax_errors(mine):
    """Python's message for each of the student's files {path: own file} that does not compile,
    starting with the student's file and line: the traceback of a failed import would start
    with pytest's plugins and name the copy, not the file the student edits."""
    found = []
    for own in mine.values():
        try:
            compile(own.read_text(), str(own), "exec")
        except SyntaxError as e:  # IndentationError and TabError included
            code = "".join(traceback.format_exception_only(e)).splitlines()[1:-1]  # line, caret
            found.append("\n".join([f"{own}, line {e.lineno}: {type(e).__name__}: {e.msg}",
                                     *code]))
    return found


def _copy_with_student_files(manifest, work_dir, tmp):
    copy = sandbox.copy_project(Path(tmp) / "project", leave_out=[work_dir])
    mine = student_files(manifest, work_dir)
    sandbox.write_files(copy, {path: own.read_text() for path, own in mine.items()})
    return copy, mine


def check(manifest, ids, work_dir=WORK_DIR, verbose=False, timeout=sandbox.TIMEOUT):
    """Run the tests of the chosen exercises against the student's files; True if all pass.
    Each exercise's tests get `timeout` seconds; one that runs longer fails, the others go on."""
    begun = started(manifest, work_dir)
    chosen = manifest.select(ids) if ids else begun
    missing = [ex.id for ex in chosen if ex not in begun]
    if missing:
        raise StudentError(f"{', '.join(missing)} not started in {work_dir} (started: "
                           f"{', '.join(ex.id for ex in begun)}): checking them would test the "
                           "solution. Start them in another folder with --dir and --only.")
    broken = syntax_errors(student_files(manifest, work_dir))
    if broken:
        for error in broken:
            print(f"ERROR {error}")
        for ex in chosen:
            print(f"{ex.id:4s} FAIL  {ex.title}  (its tests did not run: fix the error above)")
        return False
    with tempfile.TemporaryDirectory(prefix="exercises-check-") as tmp:
        copy, mine = _copy_with_student_files(manifest, work_dir, tmp)
        files_of = {ex.id: sandbox.test_files(ex.id, copy) for ex in chosen}
        report = sandbox.run_exercises(sandbox.run_pytest, copy, files_of, timeout)

        def yours(text):  # tracebacks name the copy; point them at the student's own files
            for path, own in mine.items():
                text = text.replace(str(copy / path), str(own))
            return text.replace(str(copy), str(PROJECT))

        if verbose:
            print(yours(report.output))
        for error in report.errors:
            print(f"ERROR {yours(error)}")
        failed = [ex for ex in chosen if not _print_outcome(ex, report, yours, timeout)]
        if failed:
            _print_hints(manifest, failed, report)
        return not failed


def _print_outcome(ex, report, yours, timeout):
    """One exercise's PASS or FAIL line, and its first failing tests -> True if it passed."""
    tests = report.of(ex.id)
    passed = [n for n, t in tests.items() if t["outcome"] == "passed"]
    ok = bool(tests) and len(passed) == len(tests) and ex.id not in report.timed_out
    if ex.id in report.timed_out:
        counts = f"timed out after {timeout:g} s: an endless loop?"
        # The test that was running; those after it never ran.
        failing = [(n, t) for n, t in tests.items() if t["outcome"] == "timed out"]
    else:
        counts = (f"{len(passed)}/{len(tests)} tests pass" if tests
                  else "its tests did not run: see the error above")
        failing = [(n, t) for n, t in tests.items() if t["outcome"] != "passed"]
    print(f"{ex.id:4s} {'PASS' if ok else 'FAIL'}  {ex.title}  ({counts})")
    for nodeid, t in failing[:SHOWN_FAILURES]:
        print(f"       {nodeid.split('::', 1)[-1]}: {yours(t['reason'])}")
    if len(failing) > SHOWN_FAILURES:
        print(f"       ... and {len(failing) - SHOWN_FAILURES} more")
    return ok


def _print_hints(manifest, failed, report):
    # Hints for the first exercise that fails: students work in order, and twelve sets of hints
    # at once would bury the one that matters now.
    ex = failed[0]
    print(f"\nHints for {ex.id} ({ex.title}); read first: {ex.read_first}")
    for hint in ex.hints:
        print(f"  - {hint}")
    # A test of ex that stops in another exercise's stub: that one comes first.
    stubs_hit = {m for t in report.of(ex.id).values()
                 for m in re.findall(r"NotImplementedError: (E\d+):", t["reason"])}
    unfinished = [p.id for p in manifest.closure(ex) if p.id in stubs_hit]
    if unfinished:
        print(f"  {ex.id}'s tests also run your {', '.join(unfinished)}, not written "
              "yet: do those first.")
    print(f"\npytest's full output: python -m exercises check --verbose {ex.id}"
          + (f"; another exercise's hints: python -m exercises check {failed[1].id}"
             if len(failed) > 1 else ""))


def run(manifest, command, work_dir=WORK_DIR, timeout=None):
    """Run `command` (e.g. python train.py --dry-run) in a copy of the project with the student's
    files; data/ and runs/ are the project's own. Returns the command's exit code, 124 when it
    ran longer than `timeout` seconds (None: no limit) and was killed with all it started."""
    started(manifest, work_dir)  # a clear message when there is no work folder yet
    if not command:
        raise StudentError("nothing to run: python -m exercises run -- python train.py --dry-run")
    broken = syntax_errors(student_files(manifest, work_dir))
    if broken:
        print("\n".join(f"ERROR {error}" for error in broken), file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="exercises-run-") as tmp:
        copy, mine = _copy_with_student_files(manifest, work_dir, tmp)
        sandbox.link_back(copy)
        print(f"Running {' '.join(command)} with your {', '.join(p.name for p in mine.values())}",
              file=sys.stderr)
        if timeout is None:  # the command keeps the terminal: Ctrl-C reaches it as usual
            return subprocess.run(command, cwd=copy).returncode
        proc = sandbox.start_in_own_group(command, cwd=copy)
        deadline = time.monotonic() + timeout
        if sandbox.wait_or_kill(lambda: proc.poll() is not None, proc.pid,
                                lambda: time.monotonic() > deadline):
            proc.wait()
            print(f"run: timed out after {timeout:g} s: an endless loop? (stopped with "
                  "everything it started)", file=sys.stderr)
            return 124  # what timeout(1) returns
        return proc.returncode
