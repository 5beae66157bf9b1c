"""pytest plugin (`-p exercises.pytest_report`): each test's outcome and markers, as JSON.

`check` and `selftest` run pytest in a temporary copy of the project and need more than an exit
code: which tests of which exercise passed, and why the others failed. This plugin writes
    {"tests": {nodeid: {"markers": [...], "outcome": "passed" | "failed" | "error" | "skipped",
                        "reason": "NotImplementedError: E4: ..."}},
     "errors": ["tests/test_datw.py: ImportError ..."]}        # files that could not be collected
to the file named by the environment variable EXERCISES_REPORT when the session ends.
"""
import json
import os

_tests, _errors = {}, []


def _reason(report):
    crash = getattr(report.longrepr, "reprcrash", None)  # None for skips and plain-text reprs
    text = crash.message if crash is not None else str(report.longrepr)
    return text.strip().splitlines()[0] if text.strip() else ""


def pytest_collectreport(report):
    if report.failed:
        _errors.append(f"{report.nodeid}: {_reason(report)}")


def pytest_collection_finish(session):
    for item in session.items:  # the tests selected by -m, with every marker they carry
        _tests[item.nodeid] = {"markers": sorted({m.name for m in item.iter_markers()}),
                               "outcome": "not run", "reason": ""}


def pytest_runtest_logreport(report):
    entry = _tests.setdefault(report.nodeid, {"markers": [], "outcome": "not run", "reason": ""})
    if report.failed:  # a failing setup or teardown is an error, a failing call a failure
        entry["outcome"] = "failed" if report.when == "call" else "error"
        entry["reason"] = _reason(report)
    elif report.skipped:
        entry["outcome"], entry["reason"] = "skipped", _reason(report)
    elif report.when == "call" and entry["outcome"] == "not run":
        entry["outcome"] = "passed"


def pytest_sessionfinish(session):
    with open(os.environ["EXERCISES_REPORT"], "w") as f:
        json.dump({"tests": _tests, "errors": _errors}, f, indent=1)
