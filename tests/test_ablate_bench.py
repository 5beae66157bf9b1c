"""ablate.py and bench.py: the ablation sweep writes its rows, reuses finished runs and shared
teachers, computes its claims; bench.py runs its sections; both keep each other's RESULTS.md text.

Smoke runs only (dry runs, --quick): the point is the wiring, not the numbers. No timing asserts.
"""
import csv
import io
import json
import math
import os

import pytest
import torch

import ablate
import data
import bench
import models
import options
import reports
import synthetic
import train

OTHER = "<!-- bench:begin -->\nsomeone else's table\n<!-- bench:end -->"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # One torch thread: with the cores shared (other tests, other jobs), oversubscribed intra-op
    # threads make these tiny steps many times slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """3 rows x 2 seeds of dry runs on a 6-videos-per-class synthetic set, all in a temp folder
    (two distillation rows per seed, so the second must reuse the first one's teachers)."""
    tmp = tmp_path_factory.mktemp("ablate")
    root = synthetic.ensure_synthetic_hmdb51(str(tmp / "synthetic"), seed=0, videos_per_class=6)
    (tmp / "RESULTS.md").write_text("# Results\n\n" + OTHER + "\n")
    (tmp / "README.md").write_text("# Readme\n\n<!-- claims:begin -->\n<!-- claims:end -->\n")
    argv = ["--rows", "ce,uniform", "datw", "--seeds", "0", "1", "--out", str(tmp / "runs"),
            "--results", str(tmp / "RESULTS.md"), "--",
            "--data-root", root, "--cache-dir", str(tmp / "cache"), "--synthetic-videos-per-class", "6",
            "--workers", "0", "--batch-size", "4", "--eval-clips", "2",
            "--dry-run", "--epochs", "1", "--cnn-teacher-epochs", "1", "--vit-teacher-epochs", "1"]
    return tmp, argv, ablate.main(argv)


def test_ablation_writes_csv_and_its_section_with_the_selected_rows(sweep):
    tmp, _, table = sweep
    with open(tmp / "results" / "ablation.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["row"], r["seed"]) for r in rows] == [("ce", "0"), ("ce", "1"), ("uniform", "0"),
                                                     ("uniform", "1"), ("datw", "0"), ("datw", "1")]
    for r in rows:
        assert 0.0 <= float(r["clip_acc@1"]) <= 100.0 and r["vit_teacher_clip_acc@1"] != ""
    text = (tmp / "RESULTS.md").read_text()
    section = reports.get_section(text, "ablation")
    assert "| ce | CE only" in section and "| datw | DATW |" in section and "| uniform |" in section
    assert "| DATW beats uniform teacher weights | clip_acc@1 | datw - uniform |" in section
    assert "| full |" not in section  # rows that did not run are not in the table
    assert "Wall time:" in section and "Machine:" in section and "nproc" in section
    assert "ce_matched" not in section  # no tuned.json: the compute-matched rows cannot exist
    box = reports.get_section(text, "claims")  # the answers, written beside the table
    assert "| DATW beats uniform teacher weights | `datw` - `uniform` |" in box
    assert reports.get_section((tmp / "README.md").read_text(), "claims") == box  # the same box
    assert "vit_teacher" in section and "cnn_teacher" in section


def test_ablation_keeps_the_other_sections_of_the_results_file(sweep):
    tmp, _, _ = sweep
    text = (tmp / "RESULTS.md").read_text()
    assert OTHER in text and text.startswith("# Results")


def test_teachers_are_trained_once_per_seed_and_ce_comes_from_one_run_per_seed(sweep):
    tmp, _, table = sweep
    # The cache key includes the seed but not the row: 2 teachers x 2 seeds, not x 2 rows.
    assert len(os.listdir(tmp / "cache")) == 4
    for seed in (0, 1):
        carrier = json.load(open(tmp / "runs" / "uniform" / f"seed{seed}" / "config.json"))
        other = json.load(open(tmp / "runs" / "datw" / f"seed{seed}" / "config.json"))
        assert carrier["skip_student_ce"] is False and other["skip_student_ce"] is True
        assert table["ce"][seed]["folder"].endswith(os.path.join("uniform", f"seed{seed}"))
        # Every row of one seed reports the very same (shared) teachers.
        for k in ("vit_teacher_clip_acc@1", "cnn_teacher_clip_acc@1"):
            assert table["ce"][seed][k] == table["uniform"][seed][k] == table["datw"][seed][k]


def test_second_invocation_skips_finished_runs(sweep, monkeypatch):
    tmp, argv, table = sweep

    def must_not_train(argv):
        raise AssertionError(f"train.main called again for a finished run: {argv}")

    monkeypatch.setattr(train, "main", must_not_train)
    again = ablate.main(argv)
    # --report trains nothing even where runs are missing (seed 2 has none), and keeps the table
    reported = ablate.main(["--report", *argv[:argv.index("--seeds")], "--seeds", "0", "1", "2",
                            *argv[argv.index("--seeds") + 3:]])
    assert reported["datw"] == again["datw"] and 2 not in reported["datw"]
    assert {r: set(v) for r, v in again.items() if v} == {r: {0, 1} for r in ("ce", "uniform", "datw")}
    assert again["datw"][1]["clip_acc@1"] == table["datw"][1]["clip_acc@1"]
    assert OTHER in (tmp / "RESULTS.md").read_text()


def test_interrupted_run_continues_with_resume_and_keeps_carrying_ce(sweep, tmp_path, monkeypatch):
    _, argv, _ = sweep
    sep = argv.index("--")
    argv = ["--rows", "ce", "datw", "--seeds", "0", "--out", str(tmp_path / "runs"),
            "--results", str(tmp_path / "RESULTS.md"), *argv[sep:]]  # same teachers: cached
    real_epoch, real_main, calls = train.train_one_epoch, train.main, []

    def interrupted(*a, **kw):  # Ctrl-C in the distillation stage, after student_ce finished
        if kw.get("desc", "").startswith("student 1/"):
            raise KeyboardInterrupt
        return real_epoch(*a, **kw)

    monkeypatch.setattr(train, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ablate.main(argv)
    monkeypatch.setattr(train, "train_one_epoch", real_epoch)
    monkeypatch.setattr(train, "main", lambda a: calls.append(a) or real_main(a))
    table = ablate.main(argv)
    assert len(calls) == 1 and "--resume" in calls[0] and "--skip-student-ce" not in calls[0]
    assert set(table["ce"]) == {0} and set(table["datw"]) == {0}


def test_finished_run_with_other_settings_is_an_error_not_a_silent_reuse(sweep, monkeypatch):
    tmp, argv, _ = sweep
    monkeypatch.setattr(train, "main", lambda argv: pytest.fail("must stop before training"))
    changed = list(argv)
    changed[changed.index("--epochs") + 1] = "2"
    with pytest.raises(SystemExit, match="other settings .*epochs: 1 on disk, 2 now"):
        ablate.main(changed)


def test_a_flag_added_to_train_py_after_a_run_is_a_warning_not_an_error(tmp_path):
    argv = ["--epochs", "3"]
    parsed = train.get_args_parser().parse_args(argv)
    options.resolve_defaults(parsed)  # a run's config.json holds the resolved teacher schedule
    saved = json.loads(json.dumps(vars(parsed), default=str))
    assert ablate.settings_mismatch(saved, argv) == ([], [])
    del saved["vit_teacher_lr"]  # as if the run was made before train.py had --vit-teacher-lr
    assert ablate.settings_mismatch(saved, argv) == ([], ["vit_teacher_lr"])
    saved["epochs"] = 2
    differ, _ = ablate.settings_mismatch(saved, argv)
    assert differ == ["epochs: 2 on disk, 3 now"]


def test_flags_that_ablate_sets_itself_are_refused_after_the_separator():
    with pytest.raises(SystemExit, match="sets --seed, --weighting itself"):
        ablate.main(["--", "--seed", "3", "--weighting", "uniform"])
    with pytest.raises(SystemExit, match="unknown row"):
        ablate.main(["--rows", "ce,nope"])


def test_tuning_reads_only_the_training_videos_and_writes_each_rows_choice(sweep, tmp_path, monkeypatch):
    _, argv, _ = sweep
    subsets, real = [], data.HMDB51

    def recording(*a, **kw):  # every dataset a run builds, by the videos it reads
        subsets.append(kw.get("subset"))
        return real(*a, **kw)

    monkeypatch.setattr(data, "HMDB51", recording)
    cut = argv.index("--epochs")  # the tuner sets the epochs itself
    argv = argv[:cut] + argv[cut + 2:]
    results = tmp_path / "RESULTS.md"
    tuned = ablate.main(["--tune", "--rows", "ce", "full", "--seeds", "0", "1", "--out", str(tmp_path / "tune"),
                         "--results", str(results), "--tune-rates", "0.001", "0.002", "--tune-epochs", "1", "2",
                         *argv[argv.index("--"):]])
    assert subsets and set(subsets) == {"train"}  # held-out training videos, never the test split
    on_disk = json.load(open(tmp_path / "results" / "tuned.json"))
    assert on_disk["rows"] == tuned["rows"]
    for row in ("ce", "full"):
        # With two rates the best is always on an edge: the grid grows by a factor of 2 there.
        rates = tuned["rates"][row]
        assert rates[:2] == [0.001, 0.002] and 3 <= len(rates) <= 2 + ablate.EXTEND_GRID
        for i in range(2, len(rates)):  # each new rate one factor of 2 past the grid so far
            assert rates[i] in (min(rates[:i]) / 2, max(rates[:i]) * 2)
        assert tuned["rows"][row]["lr"] in rates and tuned["rows"][row]["epochs"] in (1, 2)
        assert tuned["rows"][row]["seeds"] == 2
    # The matched rows: CE's rate, and at least the full method's epochs (a distillation epoch
    # costs more than a CE epoch; with the teachers' fine-tuning counted, more still).
    m, mt = tuned["rows"]["ce_matched"], tuned["rows"]["ce_matched_teachers"]
    assert m["lr"] == mt["lr"] == tuned["rows"]["ce"]["lr"]
    assert tuned["rows"]["full"]["epochs"] <= m["epochs"] <= mt["epochs"]
    with open(tmp_path / "results" / "tuning.csv") as f:
        runs = list(csv.DictReader(f))
    assert {(r["row"], r["lr"], r["epochs"]) for r in runs} >= {("ce", "0.001", "1"), ("ce", "0.002", "1"),
                                                              ("full", "0.001", "1"), ("full", "0.002", "1")}
    assert "## Tuning (validation" in reports.get_section(results.read_text(), "tuning")
    # Tuning more rows later keeps the earlier rows' choices, the matched rows and their grid points.
    more = ablate.main(["--tune", "--rows", "uniform", "--seeds", "0", "1", "--out", str(tmp_path / "tune"),
                        "--results", str(results), "--tune-rates", "0.001", "--tune-epochs", "1",
                        *argv[argv.index("--"):]])
    assert {r: more["rows"][r] for r in tuned["rows"]} == tuned["rows"] and "uniform" in more["rows"]
    assert len(more["commands"]) == 2 and more["cost"] == tuned["cost"]
    with open(tmp_path / "results" / "tuning.csv") as f:
        assert {r["row"] for r in csv.DictReader(f)} == {"ce", "full", "uniform"}
    section = reports.get_section(results.read_text(), "tuning")
    assert all(f"| {r} |" in section for r in ("ce", "full", "uniform", "ce_matched"))


def test_plan_gives_ce_to_one_run_per_seed_and_a_started_run_keeps_its_setting(tmp_path):
    out = str(tmp_path)
    empty = {r: {} for r in ablate.ROWS}
    # Nothing on disk, one setting for all: the first distillation row of each seed carries CE.
    assert ablate.plan(empty, [0, 1], ["ce", "uniform", "full"], out) == [
        ("uniform", 0, False), ("full", 0, True), ("uniform", 1, False), ("full", 1, True)]
    # No CE asked for: every run skips it.
    assert all(skip for _, _, skip in ablate.plan(empty, [0], ["datw", "full"], out))
    # A started run (config.json, no results.json) keeps what it started with, and then carries CE.
    os.makedirs(tmp_path / "full" / "seed0")
    json.dump({"skip_student_ce": False}, open(tmp_path / "full" / "seed0" / "config.json", "w"))
    assert ablate.plan(empty, [0], ["ce", "uniform", "full"], out) == [
        ("uniform", 0, True), ("full", 0, False)]
    assert "--resume" in ablate.row_argv("full", 0, out, [], False, False)
    # Every selected distillation row finished: CE runs on its own, CE only (--skip-student).
    done = {**empty, "datw": {0: {}}}
    assert ablate.plan(done, [0], ["ce", "datw"], out) == [("ce", 0, False)]
    argv = ablate.row_argv("ce", 0, out, [], False, False)
    assert "--skip-student" in argv and "--weighting" not in argv


def test_per_row_rate_and_epochs_reach_train_py_and_decide_who_carries_ce(tmp_path):
    out = str(tmp_path)
    empty = {r: {} for r in ablate.ROWS}
    settings = {"ce": {"lr": 0.004, "epochs": 30}, "full": {"lr": 0.008, "epochs": 30},
                "uniform": {"lr": 0.004, "epochs": 30}, "ce_matched": {"lr": 0.004, "epochs": 61}}
    for row, (lr, epochs) in (("ce", (0.004, 30)), ("full", (0.008, 30)), ("ce_matched", (0.004, 61))):
        args = ablate.resolved(ablate.row_argv(row, 0, out, ["--epochs", "15", "--lr", "1"], False,
                                               False, settings))
        assert (args.lr, args.epochs) == (lr, epochs)  # the row's own setting wins over `--`
    # Only the row with CE's very setting may carry it; the matched row runs on its own.
    assert ablate.plan(empty, [0], ["ce", "ce_matched", "full", "uniform"], out,
                       settings=settings) == [("full", 0, True), ("uniform", 0, False),
                                              ("ce_matched", 0, False)]
    assert ablate.plan(empty, [0], ["ce", "full"], out, settings=settings) == [
        ("full", 0, True), ("ce", 0, False)]
    assert ablate.setting_flags({"lr": 0.016, "epochs": 60}) == ["--lr", "0.016", "--epochs", "60"]
    # Rows with more seeds than others: the extra seeds run only those rows.
    assert ablate.plan(empty, {"ce": [0, 1], "full": [0]}, ["ce", "full"], out) == [
        ("full", 0, False), ("ce", 1, False)]
    assert ablate.ROW_SEEDS["full"] == 10 and ablate.ROW_SEEDS["kd_vit"] == 5


def test_the_zoo_students_ce_row_comes_from_its_own_init(tmp_path):
    out = str(tmp_path)
    empty = {r: {} for r in ablate.ROWS}
    # The zoo student's CE row is carried by the zoo distillation run (same init, rate, epochs),
    # never by a run whose student starts from random weights.
    assert ablate.plan(empty, [0], ["ce_student_zoo", "full"], out) == [
        ("full", 0, True), ("ce_student_zoo", 0, False)]
    assert ablate.plan(empty, [0], ["ce", "full_student_zoo", "ce_student_zoo", "full"], out) == [
        ("full_student_zoo", 0, False), ("full", 0, False)]
    argv = ablate.row_argv("ce_student_zoo", 0, out, [], False, False)
    assert argv[argv.index("--student-init") + 1] == "pretrained" and "--skip-student" in argv


def test_claims_are_paired_differences_with_a_bootstrap_ci_and_a_verdict():
    row = lambda accs: {s: {"clip_acc@1": a, "video_acc@1": a, "vit_teacher_clip_acc@1": 60.0,
                            "vit_teacher_video_acc@1": 60.0} for s, a in enumerate(accs)}
    table = {r: {} for r in ablate.ROWS}
    # full beats ce by exactly 10 in every seed although both rows spread over 20 points
    table.update(full=row([50.0, 60.0, 70.0]), ce=row([40.0, 50.0, 60.0]),
                 datw=row([45.0, 44.0, 46.0]), uniform=row([46.0, 44.0, 45.0]))
    lines = {(c["a"], c["b"], c["metric"]): c for c in ablate.claims(table)}
    c = lines[("full", "ce", "clip_acc@1")]
    assert (c["diff"], c["lo"], c["hi"], c["share"], c["verdict"]) == (10.0, 10.0, 10.0, 1.0, "shown")
    c = lines[("datw", "uniform", "clip_acc@1")]  # -1, 0, +1: centred on 0
    assert c["diff"] == 0.0 and c["lo"] < 0 < c["hi"] and c["verdict"] == "not resolved"
    assert c["share"] == 0.5  # one win, one loss, one tie
    c = lines[("full", "vit_teacher", "clip_acc@1")]  # the seed's own ViT teacher: 60
    assert (c["diff"], c["verdict"]) == (0.0, "not resolved")
    assert ("full", "full_direct", "clip_acc@1") not in lines  # rows not run: no claim at all
    box = ablate.box(table, "test")
    assert "| DATW beats uniform teacher weights | `datw` - `uniform` | +0.0 |" in box
    # every claim of the paper has its line, measured or not
    assert "| SDD's residual target beats direct ViT-feature mimicry | `full` - `full_direct` | - |" in box
    assert box.count("\n| ") == len(ablate.CLAIMS) + 1  # the header, then one line per claim


def test_sections_replace_only_their_own_text_and_refuse_half_markers(tmp_path):
    text = "# R\n\nintro\n\n" + OTHER + "\n\ntail\n"
    once = reports.replace_section(text, "ablation", "v1")
    twice = reports.replace_section(once, "ablation", "v2")
    assert reports.get_section(twice, "ablation") == "v2" and "v1" not in twice
    assert twice.startswith(text.rstrip("\n")) and twice.count("<!-- ablation:begin -->") == 1
    with pytest.raises(ValueError, match="only one of"):
        reports.replace_section("<!-- ablation:begin -->\nlost end", "ablation", "x")
    path = tmp_path / "new" / "RESULTS.md"
    reports.write_section(str(path), "bench", "hello")  # a missing file gets the short header
    assert path.read_text().startswith("# Results")
    assert reports.get_section(path.read_text(), "bench") == "hello"


def test_bench_quick_runs_every_section_and_keeps_the_ablation_section(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n<!-- ablation:begin -->\nthe table\n<!-- ablation:end -->\n")
    bench.main(["--quick", "--presets", "tiny", "--work-dir", str(tmp_path / "bench"),
                "--results", str(results)])
    text = results.read_text()
    assert reports.get_section(text, "ablation") == "the table"
    section = reports.get_section(text, "bench")
    for name in bench.SECTIONS:
        assert reports.get_section(section, f"bench-{name}").startswith(f"### {name}")
    assert "full distillation step" in section and "CE-only student step" in section
    assert "losses forward" in section and "GMAC/s" in section
    assert "| tiny | student | x3d_s_tiny |" in section and "fewer parameters" in section
    assert "HMDB51 layout, 6,766 videos" in section and "clips/s, 2 workers" in section
    deployment = reports.get_section(section, "bench-deployment")
    for role, model in (("vit_teacher", "mvit_tiny"), ("cnn_teacher", "x3d_m_tiny"), ("student", "x3d_s_tiny")):
        assert f"| tiny | {role} | {model} |" in deployment
    assert "| tiny | PyTorch | 1 |" in deployment and "| tiny | TorchScript | 1 |" in deployment
    assert "student / ViT latency" in deployment and "student / ViT MACs" in deployment
    # Rerunning one section rewrites it and keeps the others.
    bench.main(["--quick", "--sections", "efficiency", "--presets", "tiny",
                "--results", str(results)])
    section = reports.get_section(results.read_text(), "bench")
    assert all(reports.get_section(section, f"bench-{n}") for n in bench.SECTIONS)
def test_cpu_latency_is_positive_and_leaves_the_model_as_it_was():
    model = models.build_model("x3d_s_tiny", 9).train()
    ms = bench.cpu_latency_ms(model, (3, 8, 32, 32), warmup=1, repeats=2)
    assert ms > 0 and model.training


def test_recorded_runs_fill_deleted_folders_and_count_in_the_claims(sweep, tmp_path, monkeypatch):
    import shutil
    tmp, argv, table = sweep
    record = tmp / "results" / "ablation.csv"
    original = record.read_text()

    def must_not_train(argv):
        raise AssertionError(f"a recorded run was retrained: {argv}")

    monkeypatch.setattr(train, "main", must_not_train)
    shutil.move(tmp / "runs" / "datw" / "seed1", tmp_path / "seed1")  # gone from disk, kept in the record
    try:
        again = ablate.main(["--recorded", *argv])
        assert again["datw"][1]["clip_acc@1"] == table["datw"][1]["clip_acc@1"]
        assert again["datw"][1]["cnn_teacher_clip_acc@1"] == table["datw"][1]["cnn_teacher_clip_acc@1"]
        assert "1 run(s) read from" in (tmp / "RESULTS.md").read_text()
        assert ablate.main(["--report", *argv])["datw"].keys() == {0}  # without the flag: not read
        # a run recorded at another rate is not this table's: without its folder, it is missing
        rows = list(csv.DictReader(io.StringIO(original)))
        with open(record, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader(), w.writerows({**r, "lr": "0.5"} for r in rows)
        assert 1 not in ablate.main(["--report", "--recorded", *argv])["datw"]
    finally:
        shutil.move(tmp_path / "seed1", tmp / "runs" / "datw" / "seed1")
        record.write_text(original)


def test_seeds_found_on_disk_and_in_the_record_join_the_table(tmp_path):
    # a report without --seeds must keep seeds beyond the default 0..9 (e.g. a second machine's)
    (tmp_path / "out" / "datw" / "seed12").mkdir(parents=True)
    (tmp_path / "out" / "datw" / "notes").mkdir()
    (tmp_path / "rec.csv").write_text("row,seed\nfull,15\nce,3\n")
    assert ablate.seeds_found(str(tmp_path / "out")) == {12}
    assert ablate.seeds_found(str(tmp_path / "out"), str(tmp_path / "rec.csv")) == {3, 12, 15}
