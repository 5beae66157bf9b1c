"""studies.py: every run is on the validation split and paired by seed with its baseline; the
report's differences are the paired ones."""
import json
import os

import pytest

import studies


def test_every_study_run_holds_out_validation_and_the_candidates_skip_their_ce_stage():
    for name, (rows, baseline) in studies.STUDIES.items():
        for row, (_, flags) in rows().items():
            argv = studies.argv_of(flags, row, 0)
            assert argv[argv.index("--val-fraction") + 1] == "0.2"  # the test split is never built
            assert ("--skip-student" in argv) == (row == baseline)  # only the CE baseline stops at CE
            if row != baseline:
                assert "--skip-student-ce" in argv


def fake_run(out, row, seed, acc, stage):
    folder = os.path.join(out, row, f"seed{seed}")
    os.makedirs(folder)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({"models": {stage: {"clip_acc@1": acc, "video_acc@1": acc}}}, f)


def test_the_report_gives_paired_differences_with_their_ci(tmp_path, monkeypatch):
    monkeypatch.setattr(studies, "OUT", str(tmp_path / "runs"))
    for seed, (base, gate) in enumerate([(80.0, 82.0), (70.0, 73.0), (75.0, 76.0)]):
        fake_run(studies.OUT, "zoo_ce", seed, base, "student_ce")
        fake_run(studies.OUT, "zoo_gate", seed, gate, "student")
    runs = studies.main(["report", "--results", str(tmp_path / "R.md"), "--csv", str(tmp_path / "s.csv")])
    assert len(runs) == 6
    cells = studies.difference(runs, "zoo_gate", "zoo_ce")
    assert cells[1] == "+2.0" and cells[3] == "3/3" and cells[4] == "shown"  # +2, +3, +1 per seed
    text = (tmp_path / "R.md").read_text()
    assert "<!-- studies-zoo:begin -->" in text and "| `zoo_gate` |" in text


def test_a_report_without_runs_says_how_to_make_them(tmp_path, monkeypatch):
    monkeypatch.setattr(studies, "OUT", str(tmp_path / "none"))
    with pytest.raises(SystemExit, match="studies.py run"):
        studies.main(["report", "--results", str(tmp_path / "R.md"), "--csv", str(tmp_path / "s.csv")])
