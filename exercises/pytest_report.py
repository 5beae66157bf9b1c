"""pytest plugin (`-p exercises.pytest_report`): each test's outcome and markers, as JSON.

`check` and `selftest` run pytest in a temporary copy of the project and need more than an exit
code: which tests of which exercise passed, and why the others failed. This plugin writes
    {"tests": {nodeid: {"markers": [...], "outcome": "passed" | "failed" | "error" | "skipped",
                        "reason": "NotImplementedError: E4: ...", "seconds": 0.2}},
     "errors": ["tests/test_datw.py: ImportError ..."],       # files that could not be collected
     "running": {"test": nodeid, "since": time.time()} | null}
to the file named by the environment variable EXERCISES_REPORT, when each test starts and ends
and when the session ends: the parent reads it as the run's progress to enforce the exercises'
time limits (sandbox.Watchdog), and a run it kills still says which tests had ended.
"""
import json
import os
import time

_tests, _errors, _running = {}, [], {}


def _entry(nodeid):
    return _tests.setdefault(nodeid, {"markers": [], "outcome": "not run", "reason": "",
                                      "seconds": 0.0})


def _write():
    path = os.environ["EXERCISES_REPORT"]
    with open(path + ".tmp", "w") as f:
        json.dump({"tests": _tests, "errors": _errors, "running": _running or None}, f, indent=1)
    os.replace(path + ".tmp", path)  # a reader never sees half a file


def _reason(report):
    crash = getattr(report.longrepr, "reprcrash", None)  # None for skips and plain-text reprs
    text = crash.message if crash is not None else str(report.longrepr)
    return text.strip().splitlines()[0] if text.strip() else ""


def pytest_collectreport(report):
    if report.failed:
        _errors.append(f"{report.nodeid}: {_reason(report)}")


def pytest_collection_finish(session):
    for item in session.items:  # the tests selected by -m, with every marker they carry
        _entry(item.nodeid)["markers"] = sorted({m.name for m in item.iter_markers()})


def pytest_runtest_logstart(nodeid, location):
    _entry(nodeid)
    _running.update(test=nodeid, since=time.time())
    _write()


def pytest_runtest_logfinish(nodeid, location):
    _entry(nodeid)["seconds"] = time.time() - _running["since"]
    _running.clear()
    _write()


def pytest_runtest_logreport(report):
    entry = _entry(report.nodeid)
    if report.failed:  # a failing setup or teardown is an error, a failing call a failure
        entry["outcome"] = "failed" if report.when == "call" else "error"
        entry["reason"] = _reason(report)
    elif report.skipped:
        entry["outcome"], entry["reason"] = "skipped", _reason(report)
    elif report.when == "call" and entry["outcome"] == "not run":
        entry["outcome"] = "passed"


def pytest_sessionfinish(session):
    _write()
