"""Runs made by earlier versions of the code stay usable: their cached teachers are found under
the same key, ablate.py reads their folders without calling them stale, and train.py --resume
continues them.

Earlier runs differ from today's in names only: config.json and every checkpoint's config hold
the CNN teacher's settings as teacher_epochs / teacher_lr / teacher_finetune (today
cnn_teacher_*), and the teachers' checkpoints are ckpt_teacher_vit.pt / ckpt_teacher_cnn.pt
(today ckpt_vit_teacher.pt / ckpt_cnn_teacher.pt). The fake runs below are written that way.
"""
import csv
import hashlib
import json
import os
import shutil

import pytest
import torch

import ablate
import diagnostics
import options
import plumbing
import reports
import train

# Keys of the teacher cache for three configurations, as the code computed them when the
# teacher flags were renamed. A cached teacher is found by this key: a new value for the same
# settings would retrain every teacher of every finished sweep. Change these only together with
# plumbing.TEACHER_RECIPE_VERSION (a deliberate invalidation).
PINNED_CACHE_KEYS = {
    (): {"vit": "f0cc9cf4f4ba3539", "cnn": "efc442ddc8cbab72"},
    ("--teacher-init", "scratch"): {"vit": "3543244396b9e0b5", "cnn": "a67bd1317b945d92"},
    ("--dataset", "hmdb51", "--val-fraction", "0.2", "--cnn-teacher-epochs", "7", "--vit-teacher-lr", "0.001"):
        {"vit": "9782230f214d673e", "cnn": "d41f9fae8a9bf4c7"},
}
ROOT = "/nonexistent/hmdb51"  # no synthetic_hmdb51.json there: the key holds no generator settings
OLD_NAMES = {"cnn_teacher_epochs": "teacher_epochs", "cnn_teacher_lr": "teacher_lr",
             "cnn_teacher_finetune": "teacher_finetune"}  # today's name -> the earlier one
# ablate.py's per-seed record (results/ablation.csv): --recorded reads files written with these.
ABLATION_CSV_COLUMNS = [
    "row", "label", "seed", "lr", "epochs", "clip_acc@1", "video_acc@1", "best_clip_acc@1", "best_epoch",
    "videos", "vit_teacher_clip_acc@1", "vit_teacher_video_acc@1", "vit_teacher_best_clip_acc@1",
    "cnn_teacher_clip_acc@1", "cnn_teacher_video_acc@1", "cnn_teacher_best_clip_acc@1", "seconds",
    "run_seconds", "folder"]


def cache_key(argv, role, name):
    args = train.get_args_parser().parse_args(["--data-root", ROOT, "--workers", "0", "--device", "cpu", *argv])
    options.resolve_defaults(args)
    return plumbing.teacher_cache_key(args, role, name, ROOT, 280)[0]


def as_earlier_code_wrote_it(config):
    """A config (dict) with the CNN teacher's settings under their earlier names."""
    return {OLD_NAMES.get(k, k): v for k, v in config.items()}


# ------------------------------------------------------------------------------ teacher cache
@pytest.mark.parametrize("argv", list(PINNED_CACHE_KEYS))
def test_the_teacher_cache_key_of_known_settings_is_unchanged(argv):
    for role, name in (("vit", "mvit_tiny"), ("cnn", "x3d_m_tiny")):
        assert cache_key(argv, role, name) == PINNED_CACHE_KEYS[argv][role], role


def test_a_data_folder_reached_through_a_symlink_finds_the_same_cached_teachers(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    args = train.get_args_parser().parse_args(["--workers", "0", "--device", "cpu"])
    options.resolve_defaults(args)
    keys = [plumbing.teacher_cache_key(args, "cnn", "x3d_m_tiny", str(p), 280)[0]
            for p in (real, tmp_path / "link", tmp_path / "link" / ".." / "real")]
    assert keys[0] == keys[1] == keys[2]
    other = tmp_path / "other"
    other.mkdir()
    assert plumbing.teacher_cache_key(args, "cnn", "x3d_m_tiny", str(other), 280)[0] != keys[0]


def test_the_old_flag_names_give_the_same_cache_key():
    new = ["--cnn-teacher-epochs", "7", "--cnn-teacher-lr", "0.01", "--cnn-teacher-finetune", "top"]
    old = ["--teacher-epochs", "7", "--teacher-lr", "0.01", "--teacher-finetune", "top"]
    assert cache_key(old, "cnn", "x3d_m_tiny") == cache_key(new, "cnn", "x3d_m_tiny")
    assert cache_key(old, "cnn", "x3d_m_tiny") != cache_key([], "cnn", "x3d_m_tiny")


# -------------------------------------------------------------------------------- the aliases
def test_old_teacher_flags_set_the_cnn_teacher_say_so_once_and_stay_out_of_help(capsys, monkeypatch):
    monkeypatch.setattr(options.RenamedFlag, "told", set())
    argv = ["--teacher-epochs", "3", "--teacher-lr", "0.5", "--teacher-finetune", "top"]
    for _ in range(2):  # ablate.py parses the same flags many times: one note per flag
        args = train.get_args_parser().parse_args(argv)
    assert (args.cnn_teacher_epochs, args.cnn_teacher_lr, args.cnn_teacher_finetune) == (3, 0.5, "top")
    assert (args.vit_teacher_epochs, args.vit_teacher_lr, args.vit_teacher_finetune) == (None, None, None)
    assert not hasattr(args, "teacher_epochs")  # one setting, one name in config.json
    notes = capsys.readouterr().err.strip().splitlines()
    assert notes == [f"note: --teacher-{k} is now --cnn-teacher-{k} (the old name still works)"
                     for k in ("epochs", "lr", "finetune")]
    text = train.get_args_parser().format_help()
    assert "--cnn-teacher-epochs" in text and "--teacher-epochs" not in text
    with pytest.raises(SystemExit):  # the old name keeps its checks
        train.get_args_parser().parse_args(["--teacher-finetune", "some"])


# ---------------------------------------------------------------------- ablate.py: finished runs
def write_old_run(out, row, seed, passthrough, **config_changes):
    """A finished run of `row` as the earlier code left it: config.json and results.json with
    the earlier setting names, made with exactly the settings ablate.py would run now."""
    folder = ablate.run_dir(out, row, seed)
    argv = ablate.row_argv(row, seed, out, passthrough, False, False)
    config = json.loads(json.dumps(vars(ablate.resolved(argv)), default=str))
    config = as_earlier_code_wrote_it({**config, "resume": False, **config_changes})
    model = {"name": "m", "params": 1, "gmacs": 0.1, "input": [8, 32, 32], "clip_acc@1": 50.0,
             "video_acc@1": 60.0, "best_clip_acc@1": 55.0, "best_video_acc@1": 60.0, "best_epoch": 1}
    stages = ("student_ce", "student") if not ablate.ROWS[row].ce else ("student_ce",)
    history = {s: [{"stage": s, "epoch": 1, "ce": 2.0, "clip_acc@1": 50.0, "video_acc@1": 60.0,
                    "videos": 27, "lr": 0.008, "seconds": 1.0}] for s in stages}
    results = {"config": config, "models": {"vit_teacher": model, "cnn_teacher": model,
                                            **{s: model for s in stages}},
               "history": history, "seconds": 9.0,
               "stage_seconds": {"data": 1.0, "vit_teacher": 2.0, "cnn_teacher": 2.0, **{s: 2.0 for s in stages}}}
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(results, f)
    return config


def test_runs_finished_under_the_old_setting_names_are_read_not_rerun(tmp_path, monkeypatch):
    out, passthrough = str(tmp_path / "runs"), ["--teacher-epochs", "20"]  # an old sweep's command
    for row in ("ce", "datw"):
        config = write_old_run(out, row, 0, passthrough)
        assert "teacher_epochs" in config and "cnn_teacher_epochs" not in config
        # not stale, and not "made before a flag existed" either: the same settings, renamed
        assert ablate.settings_mismatch(config, ablate.row_argv(row, 0, out, passthrough, False, True)) == ([], [])
    monkeypatch.setattr(train, "main", lambda argv: pytest.fail(f"a finished run was retrained: {argv}"))
    results = tmp_path / "RESULTS.md"
    table = ablate.main(["--rows", "ce", "datw", "--seeds", "0", "--out", out, "--results", str(results),
                         "--", *passthrough])
    assert table["ce"][0]["clip_acc@1"] == table["datw"][0]["clip_acc@1"] == 50.0
    assert table["datw"][0]["vit_teacher_clip_acc@1"] == 50.0
    section = reports.get_section(results.read_text(), "ablation")
    assert "other settings" not in section and "predate" not in section
    assert "teacher epochs 20 (ViT 30)" in section  # read from the old names
    with open(tmp_path / "results" / "ablation.csv") as f:
        assert next(csv.reader(f)) == ABLATION_CSV_COLUMNS
    # A run that differs in a renamed setting is still told apart, under today's name.
    other = str(tmp_path / "other")
    config = write_old_run(other, "datw", 0, [], cnn_teacher_epochs=5)
    differ, _ = ablate.settings_mismatch(config, ablate.row_argv("datw", 0, other, [], False, True))
    assert differ == ["cnn_teacher_epochs: 5 on disk, 20 now"]


def test_write_csv_keeps_the_recorded_column_names(tmp_path):
    ablate.write_csv(str(tmp_path / "ablation.csv"), {r: {} for r in ablate.ROWS})
    with open(tmp_path / "ablation.csv") as f:
        assert next(csv.reader(f)) == ABLATION_CSV_COLUMNS


def test_diagnostics_reads_a_run_made_under_the_old_names(diagnosed_run, tmp_path):
    run_dir, _, _ = diagnosed_run
    shutil.copytree(run_dir, tmp_path / "run")
    with open(tmp_path / "run" / "config.json") as f:
        config = json.load(f)
    with open(tmp_path / "run" / "config.json", "w") as f:
        json.dump(as_earlier_code_wrote_it(config), f)
    run = diagnostics.load_run(str(tmp_path / "run"), workers=0)  # its teachers: from the cache
    assert run.args.cnn_teacher_epochs == config["cnn_teacher_epochs"] and not hasattr(run.args, "teacher_epochs")
    assert set(run.nets) == {"vit_teacher", "cnn_teacher", "student_ce", "student"}


# ----------------------------------------------------------------------- train.py --resume
def age_checkpoints(run_dir):
    """Rewrite a run's checkpoints as the earlier code wrote them: the teachers' under their
    earlier file names, every config under the earlier names with the key hashed from them."""
    for name in os.listdir(run_dir):
        if not name.startswith("ckpt_"):
            continue
        ck = torch.load(os.path.join(run_dir, name), weights_only=False)
        config = as_earlier_code_wrote_it({k: v for k, v in ck["config"].items() if k != "key"})
        kept = {k: v for k, v in config.items()
                if k not in ("resume", "workers", "device", "preload", "pretrained_dir", "check_weights")}
        key = hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]
        ck["config"] = {"key": key, **config}
        os.remove(os.path.join(run_dir, name))
        old = {"ckpt_vit_teacher.pt": "ckpt_teacher_vit.pt", "ckpt_cnn_teacher.pt": "ckpt_teacher_cnn.pt"}
        torch.save(ck, os.path.join(run_dir, old.get(name, name)))


def test_resume_continues_a_run_started_under_the_old_names(tiny, tmp_path, monkeypatch):
    def run(out, *extra):
        return train.main(["--data-root", tiny, "--out", str(tmp_path / out), "--cache-dir",
                           str(tmp_path / f"cache_{out}"), "--synthetic-videos-per-class", "6",
                           "--workers", "0", "--batch-size", "4", "--eval-clips", "2", "--dry-run",
                           "--epochs", "2", "--vit-teacher-epochs", "2", *extra])

    full = run("full", "--cnn-teacher-epochs", "2")
    real = train.train_one_epoch

    def interrupted(*a, **kw):  # Ctrl-C in the CNN teacher's second epoch
        if kw.get("desc", "").startswith("cnn_teacher 2/"):
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(train, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run("cut", "--cnn-teacher-epochs", "2")
    monkeypatch.setattr(train, "train_one_epoch", real)
    age_checkpoints(tmp_path / "cut")
    assert (tmp_path / "cut" / "ckpt_teacher_cnn.pt").exists()
    # Another setting is refused, naming it; the same settings (under the old flag) continue.
    with pytest.raises(SystemExit, match=r"ckpt_teacher_cnn.pt was written by a run with other "
                                         r"settings \(--cnn-teacher-lr: 0.004 there, 0.001 now\)"):
        run("cut", "--teacher-epochs", "2", "--cnn-teacher-lr", "0.001", "--resume")
    resumed = run("cut", "--teacher-epochs", "2", "--resume")
    assert resumed["models"] == full["models"]
    a = torch.load(tmp_path / "full" / "student.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "student.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(os.listdir(tmp_path / "cache_cut")) == sorted(os.listdir(tmp_path / "cache_full"))
