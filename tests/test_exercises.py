"""The classroom exercises: the tests of E5, E11, E12, and the tool (skeletons, start, check,
its time limits)."""
import ast
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from datw import confidence, datw_weights, discrepancy, fuse_logits
from exercises import broken_teacher, manifest, reading, sandbox, skeleton, tau_sweep
from exercises.classroom import broken_teacher_classrooms, complementary_classroom
from exercises.manifest import PROJECT, ManifestError

MANIFEST = manifest.load()


# ------------------------------------------------------------------------ E5: DATW by hand
@pytest.mark.E5
def test_reading_hand_computed_values_agree_with_datw():
    got = reading.answers()
    z_vit, z_cnn, z_s = (torch.tensor(z) for z in (reading.Z_VIT, reading.Z_CNN, reading.Z_S))
    z_t = torch.stack([z_vit, z_cnn])  # (K, 1, C)
    c, d = confidence(z_t)[:, 0], discrepancy(z_t, z_s[None])[:, 0]  # (K,) each
    w = datw_weights([z_vit, z_cnn], z_s)[0]  # (K,)
    live = {"c": c, "d": d, "e": c * d, "w": w}
    for symbol, values in live.items():
        tolerance = 0.02 if symbol == "w" else 0.01
        for k, teacher in enumerate(("vit", "cnn")):
            key = f"{symbol}_{teacher}"
            assert isinstance(got[key], float), f"{key} must be a number, got {got[key]!r}"
            # The message does not give the value away: recompute the step instead.
            assert abs(got[key] - values[k].item()) <= tolerance + 1e-9, \
                f"{key} = {got[key]} is off by more than {tolerance}"


@pytest.mark.E5
def test_reading_named_tests_guard_the_stated_properties():
    got = reading.answers()
    for guard in MANIFEST["E5"].guards:
        assert got[guard.answer] in guard.tests, \
            f"{guard.answer} = {got[guard.answer]!r} does not fail on that mistake; read again"


# ----------------------------------------------------- E11: down-weight a broken teacher
@pytest.fixture(scope="module")
def classrooms():
    return broken_teacher_classrooms()


def mean_w_vit(room, labels):
    w = broken_teacher.robust_weights([room.z_vit, room.z_cnn], room.z_s, labels)
    assert w.shape == (len(room.y), 2) and not w.requires_grad
    assert torch.allclose(w.sum(dim=1), torch.ones(len(room.y)), atol=1e-5)
    return w[:, 0].mean().item()


@pytest.mark.E11
def test_robust_weights_reject_an_untrained_vit_from_logits_alone(classrooms):
    assert mean_w_vit(classrooms["untrained ViT"], labels=None) < 0.15


@pytest.mark.E11
def test_robust_weights_reject_a_confident_wrong_vit_given_labels(classrooms):
    room = classrooms["confident, wrong ViT"]
    assert mean_w_vit(room, labels=room.y) < 0.15


@pytest.mark.E11
def test_robust_weights_share_between_two_good_teachers(classrooms):
    room = classrooms["healthy ViT"]
    for labels in (None, room.y):
        assert 0.25 < mean_w_vit(room, labels) < 0.75


@pytest.mark.E11
def test_broken_teacher_experiment_writes_its_table(tmp_path, capsys):
    broken_teacher.main(["--out", str(tmp_path / "table.csv")])
    lines = (tmp_path / "table.csv").read_text().splitlines()
    assert lines[0] == "classroom,weighting,w_vit,fused_acc,p_true_at_T" and len(lines) == 1 + 3 * 5
    assert "untrained ViT" in capsys.readouterr().out


# ---------------------------------------------------------------------- E12: sweep tau_w
@pytest.mark.E12
def test_sweep_row_equals_its_definitions_written_out():
    room = complementary_classroom(B=64)
    teachers = [room.z_vit, room.z_cnn]
    row = tau_sweep.sweep_row(teachers, room.z_s, room.y, tau_w=0.1)
    w = datw_weights(teachers, room.z_s, tau_w=0.1).tolist()
    fused = fuse_logits(teachers, torch.tensor(w)).argmax(1).tolist()
    student = room.z_s.argmax(1).tolist()
    B, y = len(w), room.y.tolist()
    s_right = [b for b in range(B) if student[b] == y[b]]
    s_wrong = [b for b in range(B) if student[b] != y[b]]
    acc = lambda rows: sum(fused[b] == y[b] for b in rows) / len(rows)
    expected = {"tau_w": 0.1, "w_vit": sum(r[0] for r in w) / B,
                "spread": sum(max(r) - min(r) for r in w) / B,
                "handover": sum(max(r) >= 0.9 for r in w) / B,
                "fused_acc": acc(range(B)), "fused_acc_s_right": acc(s_right),
                "fused_acc_s_wrong": acc(s_wrong)}
    assert row.keys() == expected.keys()
    for key, value in expected.items():
        assert row[key] == pytest.approx(value, abs=1e-6), key


@pytest.mark.E12
def test_sweep_spread_and_handover_grow_as_tau_w_falls(tmp_path):
    tau_sweep.main(["--out", str(tmp_path / "sweep.csv")])
    lines = (tmp_path / "sweep.csv").read_text().splitlines()
    header, rows = lines[0].split(","), [[float(v) for v in line.split(",")] for line in lines[1:]]
    assert [r[0] for r in rows] == sorted((r[0] for r in rows), reverse=True)  # tau_w falls
    for column in ("spread", "handover"):
        values = [r[header.index(column)] for r in rows]
        # Exact, not statistical: per sample, |w_vit - 1/2| grows as tau_w falls.
        assert values == sorted(values) and values[-1] > values[0], column


# --------------------------------------------------------------------- the tool itself
def test_every_target_resolves_and_every_mutant_changes_one_file():
    skeleton.check_manifest(MANIFEST)
    for mutant in (m for ex in MANIFEST.exercises for m in ex.mutants):
        files = skeleton.variant(MANIFEST, mutant=mutant)
        assert sum(files[p] != (PROJECT / p).read_text() for p in files) == 1, mutant.label


def test_skeleton_keeps_signatures_docstrings_and_the_reading_guide():
    stubbed = skeleton.variant(MANIFEST, stripped=[MANIFEST["E4"]])["datw.py"]
    real = (PROJECT / "datw.py").read_text()
    tree, real_tree = ast.parse(stubbed), ast.parse(real)
    assert ast.get_docstring(tree) == ast.get_docstring(real_tree)  # the reading guide
    fns = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    real_fns = {n.name: n for n in real_tree.body if isinstance(n, ast.FunctionDef)}
    for name in ("datw_weights", "fuse_logits", "entropy_weights"):
        fn = fns[name]
        assert ast.dump(fn.args) == ast.dump(real_fns[name].args)
        assert ast.get_docstring(fn) == ast.get_docstring(real_fns[name])
        assert isinstance(fn.body[1], ast.Raise) and len(fn.body) == 2
        assert "E4: write" in ast.unparse(fn.body[1])
        assert fn.decorator_list == []  # @torch.no_grad() would give the answer away
    for name in ("confidence", "kd_loss", "teacher_weights"):  # untouched, comments included
        assert ast.get_source_segment(stubbed, fns[name]) == \
            ast.get_source_segment(real, real_fns[name])


def test_a_method_without_docstring_loses_the_comments_of_its_body():
    stubbed = skeleton.variant(MANIFEST, stripped=[MANIFEST["E7"]])["sdd.py"]
    segment = stubbed[stubbed.index("class NonLocalBlock"):stubbed.index("class SqueezeExcitation")]
    assert "Embedded Gaussian" not in segment and "raise NotImplementedError(\"E7: " in segment
    assert "Note: Wang et al. zero-init" in segment  # __init__ is not a target: kept whole


def test_a_renamed_target_fails_loudly():
    renamed = (PROJECT / "datw.py").read_text().replace("def confidence(", "def confidence_k(")
    with pytest.raises(ManifestError, match="datw.py has no confidence .*renamed"):
        skeleton.strip(renamed, {"confidence": "E2: write confidence"}, "datw.py")
    with pytest.raises(ManifestError, match="no file of the project"):
        manifest.resolve_target("datw_typo.kd_loss")


def test_a_stale_mutant_fails_loudly():
    source = (PROJECT / "datw.py").read_text()
    gone = manifest.Mutant("E1", "gone", "return T ** 3 * kl / B", "return kl")
    with pytest.raises(ManifestError, match="occurs 0 times"):
        skeleton.mutate(source, gone, ["kd_loss"], "datw.py")
    outside = manifest.Mutant("E1", "outside", "def confidence(z, T_c=1.0):", "def confidence(z):")
    with pytest.raises(ManifestError, match="outside the exercise's targets"):
        skeleton.mutate(source, outside, ["kd_loss"], "datw.py")


def exercises_cli(*args, cwd=PROJECT):
    return subprocess.run([sys.executable, "-m", "exercises", *args], cwd=cwd,
                          capture_output=True, text=True)


def test_exercises_md_lists_every_exercise_as_the_manifest_does():
    rows = [line for line in (PROJECT / "EXERCISES.md").read_text().splitlines()
            if line.startswith("| E")]
    assert [row.split(" | ")[0] for row in rows] == [f"| {ex.id}" for ex in MANIFEST.exercises]
    for row, ex in zip(rows, MANIFEST.exercises):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == ex.title and cells[3] == str(ex.minutes), ex.id


def test_start_never_overwrites_the_work_folder(tmp_path):
    work = tmp_path / "mine"
    first = exercises_cli("start", "--only", "E6", "E7", "--dir", str(work))
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in work.iterdir()) == ["sdd.py", "started.toml"]
    (work / "sdd.py").write_text("my work")
    again = exercises_cli("start", "--dir", str(work))
    assert again.returncode == 2 and "never overwrites" in again.stderr
    assert (work / "sdd.py").read_text() == "my work"


def test_check_fails_a_skeleton_and_passes_a_finished_exercise(tmp_path):
    work = tmp_path / "mine"
    assert exercises_cli("start", "--only", "E1", "E2", "--dir", str(work)).returncode == 0
    # The student finishes E2 (here: the solution's body) and leaves E1 as it was given.
    finished = skeleton.variant(MANIFEST, stripped=[MANIFEST["E1"]])["datw.py"]
    (work / "datw.py").write_text(finished)
    done = exercises_cli("check", "--dir", str(work))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "E1   FAIL" in done.stdout and "NotImplementedError: E1: write kd_loss" in done.stdout
    assert "E2   PASS" in done.stdout and "Hints for E1" in done.stdout


def test_check_names_the_students_file_and_line_first_on_a_syntax_error(tmp_path):
    work = tmp_path / "mine"
    assert exercises_cli("start", "--only", "E1", "--dir", str(work)).returncode == 0
    source = (work / "datw.py").read_text()
    stub = 'raise NotImplementedError("E1'
    line = source[:source.index(stub)].count("\n") + 1
    (work / "datw.py").write_text(source.replace(stub, 'raise NotImplementedError(("E1'))
    done = exercises_cli("check", "--dir", str(work))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith(f"ERROR {work / 'datw.py'}, line {line}: SyntaxError: ")
    assert "E1   FAIL" in done.stdout


# A test that starts a process, writes its id to a file, and never returns: what the time limit
# must stop, with the process it started.
ENDLESS = """import subprocess, sys
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    open({pid_file!r}, "w").write(str(sleeper.pid))
    while True:
        pass"""


def has_ended(pid, wait=10.0):
    """True once process `pid` has exited within `wait` seconds (a zombie has: only its exit
    status is left, for a parent that may never collect it)."""
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.05)
    return False


def test_check_stops_an_endless_loop_and_goes_on_with_the_next_exercise(tmp_path):
    work = tmp_path / "mine"
    assert exercises_cli("start", "--only", "E1", "E2", "--dir", str(work)).returncode == 0
    # E2 finished (the solution's body), kd_loss of E1 an endless loop.
    finished = skeleton.variant(MANIFEST, stripped=[MANIFEST["E1"]])["datw.py"]
    stub = 'raise NotImplementedError("E1: write kd_loss, then: python -m exercises check E1")'
    pid_file = tmp_path / "sleeper.pid"
    (work / "datw.py").write_text(finished.replace(stub, ENDLESS.format(pid_file=str(pid_file))))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "exercises", "check", "--timeout", "2", "--dir",
                           str(work)], cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "E1   FAIL  The KD loss: T^2 and batchmean  (timed out after 2 s: an endless loop?)" \
        in done.stdout
    assert "E2   PASS" in done.stdout
    assert time.monotonic() - started < 2 * sandbox.LOADING_SECONDS  # two pytest runs at most
    assert has_ended(int(pid_file.read_text())), "the process the looping test started survived"


@pytest.mark.parametrize("runner", [sandbox.run_pytest, sandbox.run_pytest_forked],
                         ids=["check", "selftest"])
def test_a_pytest_run_stops_the_exercise_out_of_time_and_runs_the_others(tmp_path, runner):
    """Both ways of running pytest, on a project of two tests: E1's loops, E2's passes."""
    copy = tmp_path / "project"
    (copy / "exercises").mkdir(parents=True)
    (copy / "tests").mkdir()
    (copy / "exercises" / "__init__.py").write_text("")
    shutil.copy(PROJECT / "exercises" / "pytest_report.py", copy / "exercises")
    (copy / "pytest.ini").write_text("[pytest]\nmarkers =\n    E1: loops\n    E2: passes\n")
    pid_file = tmp_path / "sleeper.pid"
    (copy / "tests" / "test_two.py").write_text(
        "import pytest\n\n\n@pytest.mark.E1\ndef test_loops():\n    "
        + ENDLESS.format(pid_file=str(pid_file))
        + "\n\n\n@pytest.mark.E2\ndef test_passes():\n    pass\n")
    files = ["tests/test_two.py"]
    report = sandbox.run_exercises(runner, copy, {"E1": files, "E2": files}, timeout=1)
    assert report.timed_out == ["E1"]
    assert [t["outcome"] for t in report.of("E1").values()] == ["timed out"]
    assert [t["outcome"] for t in report.of("E2").values()] == ["passed"]
    assert has_ended(int(pid_file.read_text())), "the process the looping test started survived"
