"""`python -m exercises selftest`: prove that every exercise's tests bite, as CI does.

For each exercise, in a temporary copy of the project:
  1. solution      its tests pass on the real code (and there is at least one);
  2. skeleton      with only its targets stripped, every one of its tests fails;
  3. prerequisites with every target outside it and its prerequisites stripped, its tests still
                   pass: a student never needs a later (or undeclared) exercise to pass one;
  4. mutants       each plausible wrong solution in the manifest fails at least one of its tests.
A reading question that names "the test guarding a property" is checked too: its accepted
answers must be exactly the tests that catch the mutant breaking that property.
A run in which a test file cannot even be collected aborts the self-test: an import error says
nothing about the tests, so it must never count as a caught mutant. A run in which an exercise's
tests outlast the time limit fails that exercise (an endless loop in a variant), and the
self-test goes on with the next one.
"""
import configparser
import os
import re
import tempfile
import time
from pathlib import Path

from . import sandbox
from .manifest import PROJECT
from .skeleton import check_manifest, variant
from .student import WORK_DIR


class SelftestError(Exception):
    """The self-test could not judge the exercises (a run that does not collect, bad markers)."""


class TimedOut(Exception):
    """A run of one exercise's tests was stopped by the time limit; the message says which."""


def check_markers(manifest, root=PROJECT):
    """pytest.ini registers exactly the exercise ids; tests mark no other id; each has tests."""
    ini = configparser.ConfigParser()
    ini.read(root / "pytest.ini")
    registered = {line.split(":")[0].strip() for line in ini["pytest"]["markers"].splitlines()
                  if line.strip()}
    ids = {ex.id for ex in manifest.exercises}
    if registered != ids:
        raise SelftestError(f"pytest.ini registers markers {sorted(registered)}, the manifest has "
                            f"exercises {sorted(ids)}: make them the same.")
    for path in sorted((root / "tests").glob("test_*.py")):
        unknown = set(re.findall(r"\bmark\.(E\d+)\b", path.read_text())) - ids
        if unknown:
            raise SelftestError(f"{path.name} marks tests {sorted(unknown)}, which are not "
                                "exercises: add them to exercises.toml or remove the marks.")
    for ex in manifest.exercises:
        if not sandbox.test_files(ex.id, root):
            raise SelftestError(f"{ex.id} has no marked tests (@pytest.mark.{ex.id}) in tests/.")


def _name(nodeid):
    """'tests/test_datw.py::test_x[datw]' -> 'test_x'."""
    return nodeid.split("::")[-1].split("[")[0]


class _Runner:
    """Writes a variant of the files into one copy and runs pytest on it in a forked child."""

    def __init__(self, copy, timeout):
        self.copy, self.timeout, self.count = copy, timeout, 0

    def __call__(self, files, args, label, exercise_id):
        """One run for one exercise; TimedOut if its tests outlast the limit."""
        sandbox.write_files(self.copy, files)
        report = self._forked(self.copy, args, sandbox.Watchdog([exercise_id], self.timeout))
        if report.stopped:
            what = (f"timed out after {self.timeout:g} s: an endless loop?" if report.timed_out
                    else report.errors[-1])  # stopped outside its tests (a guard's whole file)
            raise TimedOut(f"{what} (in the run '{label}')")
        return self._collected(report, label)

    def solution(self, files, files_of):
        """The tests of every exercise {id: test files} on the solution, in as few runs as the
        time limit allows."""
        sandbox.write_files(self.copy, files)
        report = sandbox.run_exercises(self._forked, self.copy, files_of, self.timeout)
        return self._collected(report, "solution")

    def _forked(self, copy, args, watchdog):
        self.count += 1
        return sandbox.run_pytest_forked(copy, args, watchdog)

    @staticmethod
    def _collected(report, label):
        if report.errors:
            raise SelftestError(f"{label}: tests could not be collected, so this run says "
                                f"nothing about them:\n" + "\n".join(report.errors))
        return report


def _judge(manifest, ex, run, files, solution):
    """Steps 2-4 for one exercise -> (summary line, [problems])."""
    tests = solution.of(ex.id)
    problems = []
    if not tests:
        problems.append("no test is marked for it")
    not_passing = {n: t for n, t in tests.items() if t["outcome"] != "passed"}
    problems += [f"solution: {n} {t['outcome']}: {t['reason']}" for n, t in not_passing.items()]
    marked = ["-m", ex.id, *files]

    skeleton = run(variant(manifest, stripped=[ex]), marked, f"{ex.id} skeleton",
                   ex.id).of(ex.id)
    survived = [n for n in tests if skeleton.get(n, {}).get("outcome") not in ("failed", "error")]
    problems += [f"skeleton: {n} does not fail with {ex.id} stripped" for n in survived]

    others = [o for o in manifest.exercises if o != ex and o not in manifest.closure(ex)]
    alone = run(variant(manifest, stripped=others), marked, f"{ex.id} prerequisites",
                ex.id).of(ex.id)
    needs = [n for n in tests if alone.get(n, {}).get("outcome") != "passed"]
    problems += [f"prerequisites: {n} needs more than {ex.id} and its prerequisites: "
                 f"{alone.get(n, {}).get('reason', 'not run')}" for n in needs]

    caught = 0
    for mutant in ex.mutants:
        outcome = run(variant(manifest, mutant=mutant), marked, mutant.label, ex.id).of(ex.id)
        catchers = [n for n in tests if outcome.get(n, {}).get("outcome") != "passed"]
        caught += bool(catchers)
        if not catchers:
            problems.append(f"mutant {mutant.name!r} passes every test of {ex.id}")
    prereqs = ", ".join(p.id for p in manifest.closure(ex)) or "none"
    line = (f"{ex.id:4s} solution {len(tests) - len(not_passing)}/{len(tests)} pass | "
            f"skeleton {len(tests) - len(survived)}/{len(tests)} fail | "
            f"prerequisites ({prereqs}) {'suffice' if not needs else 'DO NOT suffice'} | "
            f"mutants caught {caught}/{len(ex.mutants)}")
    return line, problems


def _judge_guards(manifest, ex, run):
    """A guard's accepted tests must be exactly those of its file that fail on its mutant."""
    problems = []
    for guard in ex.guards:
        mutant = manifest.mutant(guard.mutant)
        files = sandbox.test_files(mutant.exercise, run.copy)
        # The whole files, unmarked tests included: any test that catches the mutant guards it.
        report = run(variant(manifest, mutant=mutant), files, f"guard {guard.answer}", ex.id)
        catchers = {_name(n) for n, t in report.tests.items() if t["outcome"] != "passed"}
        if catchers != set(guard.tests):
            problems.append(f"guard {guard.answer!r}: the tests that catch {mutant.label!r} are "
                            f"{sorted(catchers)}; set its `tests` in exercises.toml to them.")
    return problems


def selftest(manifest, ids=(), timeout=sandbox.TIMEOUT):
    """Run the self-test of the chosen exercises (all by default); True when every check holds.
    Each run's tests get `timeout` seconds per exercise."""
    started_at = time.perf_counter()
    if not hasattr(os, "fork"):
        raise SelftestError("the self-test forks one child per pytest run (os.fork: Linux, macOS); "
                            "run it there, e.g. in CI. check and run work everywhere.")
    check_markers(manifest)
    check_manifest(manifest)  # a renamed target: the manifest's message, not an ImportError
    chosen = manifest.select(ids)
    sandbox.preload_libraries()
    with tempfile.TemporaryDirectory(prefix="exercises-selftest-") as tmp:
        run = _Runner(sandbox.copy_project(Path(tmp) / "project", leave_out=[WORK_DIR]), timeout)
        files_of = {ex.id: sandbox.test_files(ex.id, run.copy) for ex in chosen}
        solution = run.solution(variant(manifest), files_of)
        problems = []
        for ex in chosen:
            try:
                if ex.id in solution.timed_out:
                    raise TimedOut(f"timed out after {timeout:g} s: an endless loop? (solution)")
                line, found = _judge(manifest, ex, run, files_of[ex.id], solution)
                found += _judge_guards(manifest, ex, run)
            except TimedOut as e:
                line, found = f"{ex.id:4s} FAIL ({e})", [str(e)]
            print(line + ("" if not found else "  <- PROBLEM"), flush=True)
            problems += [f"{ex.id} {p}" for p in found]
    for p in problems:
        print(f"PROBLEM {p}")
    seconds = time.perf_counter() - started_at
    print(f"selftest: {len(chosen)} exercises, {run.count} pytest runs, {seconds:.0f} s: "
          + ("all checks hold." if not problems else f"{len(problems)} problems."))
    return not problems
