"""train.py end to end: every stage runs, files are right, teachers stay frozen, resume is exact,
a non-finite loss stops the run, and a 2-process DDP run works (gloo on CPU)."""
import json
import os
import subprocess
import sys

import pytest
import torch

import models
import options
import plumbing
import synthetic
import train
from features import FeatureTap, feature_dims
from sdd import SDDHead

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A tiny synthetic set and short runs: the point is the wiring, not the accuracy.
FAST = ["--synthetic-videos-per-class", "6", "--workers", "0", "--batch-size", "4",
        "--eval-clips", "2", "--vit-teacher-epochs", "1"]


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synthetic"))
    synthetic.ensure_synthetic_hmdb51(root, seed=0, videos_per_class=6)
    return root


def run(tmp_path, data_root, *extra, out="run"):
    argv = ["--data-root", data_root, "--out", str(tmp_path / out),
            "--cache-dir", str(tmp_path / "cache"), *FAST, *extra]
    return train.main(argv)


@pytest.fixture(scope="module")
def dry(tmp_path_factory, data_root):
    tmp = tmp_path_factory.mktemp("dry")
    return tmp, run(tmp, data_root, "--dry-run", "--epochs", "1", "--cnn-teacher-epochs", "1")


def test_dry_run_writes_results_with_every_model_and_metric(dry):
    tmp, out = dry
    saved = json.load(open(tmp / "run" / "results.json"))
    assert set(saved["models"]) == {"vit_teacher", "cnn_teacher", "student", "student_ce"}
    for entry in saved["models"].values():
        for key in ("name", "params", "gmacs", "input", "clip_acc@1", "video_acc@1"):
            assert entry[key] is not None, key
        assert 0.0 <= entry["clip_acc@1"] <= 100.0
    assert saved["config"]["seed"] == 0 and saved["config"]["preset"] == "tiny"
    assert 0 < saved["reduction_vs_vit"]["params_%"] < 100
    for name in ("student.pt", "log.csv", "config.json"):
        assert (tmp / "run" / name).exists(), name
    header = open(tmp / "run" / "log.csv").readline().strip().split(",")
    for term in ("ce", "kd", "sdd", "rkd", "w_vit", "w_cnn", "clip_acc@1"):
        assert term in header


def test_only_the_last_epoch_is_evaluated_unless_eval_every_says_so(tmp_path, data_root):
    # (--epochs 2 and --cnn-teacher-epochs 2: what --dry-run clamps every stage to)
    last = run(tmp_path, data_root, "--dry-run", "--epochs", "2", "--cnn-teacher-epochs", "2", out="last")
    every = run(tmp_path, data_root, "--dry-run", "--epochs", "2", "--cnn-teacher-epochs", "2",
                "--eval-every", "1", out="every")
    for stage in ("student_ce", "student"):
        first, second = last["history"][stage]
        assert "clip_acc@1" not in first and "clip_acc@1" in second
        assert all("clip_acc@1" in row for row in every["history"][stage])
        assert last["models"][stage]["best_epoch"] == 2  # "best" only among evaluated epochs
    # The same training either way: evaluation changes no weights and no random stream.
    assert last["models"]["student"]["clip_acc@1"] == every["models"]["student"]["clip_acc@1"]
    # The wall time by stage, each part of the whole.
    parts = last["stage_seconds"]
    assert set(parts) == {"data", "vit_teacher", "cnn_teacher", "student_ce", "student"}
    assert all(v >= 0 for v in parts.values()) and sum(parts.values()) <= last["seconds"] + 0.1


def test_saved_student_is_a_plain_model_without_training_only_weights(dry):
    tmp, out = dry
    state = torch.load(tmp / "run" / "student.pt", weights_only=True)
    plain = models.build_model(models.PRESETS["tiny"]["student"], num_classes=len(state[
        [k for k in state if k.endswith("weight")][-1]]))
    assert set(state) == set(plain.state_dict())  # no "sdd.", "tap.", "phi" keys
    plain.load_state_dict(state)


def test_teachers_are_cached_and_reused(tmp_path, data_root, dry):
    tmp, _ = dry
    cached = sorted(os.listdir(tmp / "cache"))
    assert len(cached) == 2
    mtimes = [os.path.getmtime(tmp / "cache" / c) for c in cached]
    run(tmp, data_root, "--dry-run", "--epochs", "1", "--cnn-teacher-epochs", "1", "--skip-student-ce",
        out="again")
    assert sorted(os.listdir(tmp / "cache")) == cached
    assert [os.path.getmtime(tmp / "cache" / c) for c in cached] == mtimes


@pytest.mark.parametrize("argv, vit_changes, cnn_changes", [
    (["--vit-teacher-lr", "1"], True, False), (["--vit-teacher-epochs", "3"], True, False),
    (["--cnn-teacher-lr", "1"], False, True), (["--cnn-teacher-epochs", "3"], False, True),
    (["--vit-teacher-finetune", "all"], True, False), (["--cnn-teacher-finetune", "top"], False, True),
    (["--seed", "1"], True, True)])
def test_a_teachers_cache_key_follows_its_own_recipe_only(argv, vit_changes, cnn_changes):
    # Another recipe is another cache entry, never a silent reuse; the other teacher's schedule
    # is not part of it (changing the ViT's epochs does not retrain the CNN).
    def key(role, args):
        return plumbing.teacher_cache_key(train.get_args_parser().parse_args(args), role, "m", ".", 10)[0]
    assert (key("vit", []) != key("vit", argv), key("cnn", []) != key("cnn", argv)) == (vit_changes, cnn_changes)


def test_the_tiny_vit_teacher_fine_tunes_only_its_top_and_the_cnn_all_of_it(dry):
    tmp, out = dry
    assert (out["config"]["vit_teacher_finetune"], out["config"]["cnn_teacher_finetune"]) == ("top", "all")
    for role in ("vit", "cnn"):
        name = models.PRESETS["tiny"][f"{role}_teacher"]
        [entry] = [f for f in os.listdir(tmp / "cache") if f.startswith(f"{role}_{name}_")]
        tuned = torch.load(tmp / "cache" / entry, weights_only=False)["model"]
        classes = tuned[[k for k in tuned if k.endswith("weight")][-1]].shape[0]
        zoo = dict(models.build_model(name, classes, pretrained=True).named_parameters())
        top = [k for k in zoo if k.startswith(models.TOP_LAYERS[name])]
        below = [k for k in zoo if k not in top]
        kept = [k for k in below if torch.equal(tuned[k], zoo[k])]
        assert kept == (below if role == "vit" else []), role  # as pretrained / all fine-tuned
        assert sum(not torch.equal(tuned[k], zoo[k]) for k in top) > len(top) // 2, role


@pytest.mark.parametrize("argv, cnn, vit", [([], "all", "top"), (["--teacher-init", "scratch"], "all", "all"),
                                           (["--preset", "paper"], "all", "all"),
                                           (["--vit-teacher-finetune", "all", "--cnn-teacher-finetune", "top"], "top", "all")])
def test_teacher_finetune_defaults_to_the_presets_choice_and_to_all_from_scratch(argv, cnn, vit):
    args = train.get_args_parser().parse_args(argv)
    options.resolve_defaults(args)
    assert (args.cnn_teacher_finetune, args.vit_teacher_finetune) == (cnn, vit)


@pytest.mark.parametrize("flag", ["--cnn-teacher-finetune", "--vit-teacher-finetune"])
def test_fine_tuning_only_the_top_of_random_teachers_is_refused(flag):
    args = train.get_args_parser().parse_args(["--teacher-init", "scratch", flag, "top"])
    with pytest.raises(SystemExit, match=f"{flag} all"):
        options.resolve_defaults(args)


def test_a_synthetic_set_redrawn_in_the_same_folder_gets_new_teachers(tmp_path):
    args = train.get_args_parser().parse_args([])
    keys = []
    for tilt in (0.15, 0.35):
        with open(tmp_path / synthetic.SYNTHETIC_INFO, "w") as f:
            json.dump({"settings": {"set": "tiny", "tilt": tilt}}, f)
        keys.append(plumbing.teacher_cache_key(args, "vit", "m", str(tmp_path), 10)[0])
    assert keys[0] != keys[1]


@pytest.mark.parametrize("cores, device, workers", [(2, "cpu", 0), (4, "cpu", 0), (16, "cpu", 2),
                                                    (2, "cuda", 2)])
def test_loader_workers_default_to_none_where_they_would_compete_with_torch(monkeypatch, cores,
                                                                             device, workers):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    args = train.get_args_parser().parse_args(["--device", device])
    options.resolve_defaults(args)
    assert args.workers == workers and args.preload is True  # the synthetic set is preloaded
    args = train.get_args_parser().parse_args(["--dataset", "hmdb51", "--workers", "3"])
    options.resolve_defaults(args)
    assert args.workers == 3 and args.preload is False  # real videos are decoded on the fly


@pytest.mark.parametrize("flags", [["--weighting", "datw"],
                                     ["--weighting", "camkd", "--kd-gate", "label"],  # both read the labels
                                     ["--mixup", "0.4", "--kd-loss", "dist", "--fault", "wrong"]])
def test_distillation_never_changes_teachers_or_their_batchnorm_statistics(dry, data_root, flags):
    preset = models.PRESETS["tiny"]
    args = train.get_args_parser().parse_args(["--data-root", data_root, *FAST, *flags])
    train_set, _, _ = plumbing.build_datasets(args, preset["clip"])
    n = len(train_set.classes)
    vit = train.frozen(models.build_model(preset["vit_teacher"], n))
    cnn = train.frozen(models.build_model(preset["cnn_teacher"], n))
    before = {k: {n_: t.clone() for n_, t in m.state_dict().items()} for k, m in (("vit", vit), ("cnn", cnn))}
    student = models.build_model(preset["student"], n)
    specs = {k: models.input_spec(preset[k]) for k in ("vit_teacher", "cnn_teacher", "student")}
    dims = [feature_dims(m, specs[k])["map"] for m, k in
            ((student, "student"), (vit, "vit_teacher"), (cnn, "cnn_teacher"))]
    net = train.Distiller(student, SDDHead(*dims))
    s_before = {k: t.clone() for k, t in student.state_dict().items()}
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    teachers = {"vit": train.Teacher(FeatureTap(vit), specs["vit_teacher"]),
                "cnn": train.Teacher(FeatureTap(cnn), specs["cnn_teacher"])}
    loader = plumbing.train_loader(train_set, args, (0, "t", 0))
    stats = train.train_one_epoch(net, loader, opt, sched, scaler, args, specs["student"], teachers,
                                  max_steps=2)
    assert stats["kd"] > 0 and stats["sdd"] > 0 and stats["rkd"] >= 0 and 0 < stats["kd_kept"] <= 1
    assert not vit.training and not cnn.training
    for k, m in (("vit", vit), ("cnn", cnn)):
        for name, t in m.state_dict().items():
            assert torch.equal(t, before[k][name]), f"{k} teacher changed: {name}"
    changed = [k for k, t in student.state_dict().items() if not torch.equal(t, s_before[k])]
    assert changed, "the student must learn"


def test_resume_after_interruption_ends_with_the_same_numbers(tmp_path, data_root, monkeypatch):
    base = ["--epochs", "2", "--cnn-teacher-epochs", "1", "--skip-student-ce"]  # full epochs, no dry run
    full = run(tmp_path, data_root, *base, out="full")
    real = train.train_one_epoch

    def interrupted(*a, **kw):  # Ctrl-C during the second epoch of the student
        if kw.get("desc", "").startswith("student 2/"):
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(train, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, data_root, *base, out="cut")
    assert (tmp_path / "cut" / "ckpt_student.pt").exists()
    monkeypatch.setattr(train, "train_one_epoch", real)
    resumed = run(tmp_path, data_root, *base, "--resume", out="cut")
    a = torch.load(tmp_path / "full" / "student.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "student.pt", weights_only=True)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full["models"]["student"]["clip_acc@1"] == resumed["models"]["student"]["clip_acc@1"]
    assert full["history"]["student"][-1]["kd"] == pytest.approx(resumed["history"]["student"][-1]["kd"])


def test_non_finite_loss_stops_naming_the_term_and_keeps_the_last_checkpoint(tmp_path, data_root,
                                                                             monkeypatch):
    base = ["--dry-run", "--epochs", "2", "--cnn-teacher-epochs", "1", "--skip-student-ce"]
    real, calls = train.kd_loss, {"n": 0}

    def kd_blows_up(*a, **kw):
        calls["n"] += 1
        return real(*a, **kw) * (float("nan") if calls["n"] > 2 else 1.0)  # epoch 2, step 0

    monkeypatch.setattr(train, "kd_loss", kd_blows_up)
    with pytest.raises(train.NonFiniteLoss, match=r"non-finite kd loss .* epoch 1 step 0"):
        run(tmp_path, data_root, *base)
    ck = torch.load(tmp_path / "run" / "ckpt_student.pt", weights_only=False)
    assert ck["state"]["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in ck["net"].values() if t.is_floating_point())


def test_bad_names_list_the_valid_ones(tmp_path, data_root):
    with pytest.raises(SystemExit, match="valid: paper, tiny, torchvision"):
        run(tmp_path, data_root, "--preset", "huge")


def test_incompatible_teacher_checkpoint_fails_clearly(tmp_path, data_root):
    wrong = models.build_model(models.PRESETS["tiny"]["vit_teacher"], num_classes=3)
    torch.save(wrong.state_dict(), tmp_path / "wrong.pt")
    with pytest.raises(SystemExit, match="does not fit this model"):
        run(tmp_path, data_root, "--dry-run", "--vit-teacher-ckpt", str(tmp_path / "wrong.pt"))


def test_two_process_ddp_run_on_cpu(tmp_path, data_root):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
           os.path.join(ROOT, "train.py"), "--data-root", data_root, "--out", str(tmp_path / "ddp"),
           "--cache-dir", str(tmp_path / "cache"), *FAST, "--dry-run", "--epochs", "1",
           "--cnn-teacher-epochs", "1", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.load(open(tmp_path / "ddp" / "results.json"))
    assert saved["models"]["student"]["clip_acc@1"] is not None


def test_same_seed_trains_identical_teachers(tmp_path, data_root):
    """--seed fixes the teachers' initial weights too, so a run's numbers follow from its flags."""
    base = ["--dry-run", "--epochs", "1", "--cnn-teacher-epochs", "1", "--skip-student-ce"]
    for name in ("a", "b"):
        run(tmp_path, data_root, *base, "--cache-dir", str(tmp_path / f"cache_{name}"), out=name)
    files = sorted(os.listdir(tmp_path / "cache_a"))
    assert files == sorted(os.listdir(tmp_path / "cache_b")) and len(files) == 2
    for f in files:
        a = torch.load(tmp_path / "cache_a" / f, weights_only=False)["model"]
        b = torch.load(tmp_path / "cache_b" / f, weights_only=False)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a), f


def test_from_scratch_setting_stays_reachable_and_trains_other_teachers(tmp_path, data_root, dry):
    res = run(tmp_path, data_root, "--dry-run", "--epochs", "1", "--cnn-teacher-epochs", "1",
              "--teacher-init", "scratch", "--student-init", "scratch")
    assert res["config"]["teacher_init"] == res["config"]["student_init"] == "scratch"
    # Another teacher recipe, another cache entry: the pretrained run's teachers are not reused.
    key_pre, _ = plumbing.teacher_cache_key(train.get_args_parser().parse_args([]), "vit", "m", ".", 10)
    key_scr, _ = plumbing.teacher_cache_key(
        train.get_args_parser().parse_args(["--teacher-init", "scratch"]), "vit", "m", ".", 10)
    assert key_pre != key_scr
    assert set(res["models"]) == {"vit_teacher", "cnn_teacher", "student", "student_ce"}


def test_the_label_gate_sums_kd_over_the_clips_whose_target_is_right_divided_by_the_whole_batch():
    from datw import kd_loss
    args = train.get_args_parser().parse_args(["--kd-gate", "label"])
    g = torch.Generator().manual_seed(0)
    z_s, z_t = torch.randn(6, 9, generator=g), torch.randn(6, 9, generator=g)
    y = z_t.argmax(1).clone()
    y[:2] = (y[:2] + 1) % 9  # the target contradicts the label on clips 0 and 1
    kd, kept = train.kd_term(z_s, z_t, y, args)
    naive = sum(kd_loss(z_s[b:b + 1], z_t[b:b + 1], T=args.T) for b in range(2, 6)) / 6
    assert kd.item() == pytest.approx(naive.item(), rel=1e-5) and kept.item() == pytest.approx(4 / 6)
    kd, kept = train.kd_term(z_s, z_t, (z_t.argmax(1) + 1) % 9, args)  # wrong everywhere: no KD
    assert kd.item() == 0 and kept.item() == 0
    args.kd_gate = "none"
    assert train.kd_term(z_s, z_t, y, args)[0].item() == pytest.approx(kd_loss(z_s, z_t).item())


def test_mixup_mixes_the_clips_and_the_labels_with_the_same_coefficient():
    torch.manual_seed(0)
    clip = torch.randint(0, 256, (4, 3, 2, 4, 4), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 3])  # label b for clip b: the partner's label names its clip
    mixed, y_b, lam = train.mixup(clip, y, 0.4)
    assert 0 <= lam <= 1 and mixed.dtype == torch.uint8
    expected = (lam * clip.float() + (1 - lam) * clip[y_b].float()).round()
    assert torch.equal(mixed.float(), expected)  # clip b mixed with clip y_b[b], weight lam
    args = train.get_args_parser().parse_args([])
    z = torch.randn(4, 9)
    z_t = [torch.randn(4, 9), torch.randn(4, 9)]
    args.beta = args.gamma = 0
    terms = train.distillation_terms(z, {"embed": None}, None, None, z_t[0], {"embed": None}, z_t[1], y, args,
                                     mix=(y_b, lam))
    ce = torch.nn.functional.cross_entropy
    assert terms["ce"].item() == pytest.approx((lam * ce(z, y) + (1 - lam) * ce(z, y_b)).item(), rel=1e-5)


@pytest.mark.parametrize("flags", [["--weighting", "camkd"], ["--kd-gate", "label"]])
def test_mixup_with_an_option_that_reads_one_label_per_clip_is_refused(flags):
    args = train.get_args_parser().parse_args(["--mixup", "0.4", *flags])
    with pytest.raises(SystemExit, match="--mixup mixes two labels"):
        options.resolve_defaults(args)
