"""diagnostics.py: the pure functions on hand-made logits with known answers (and a naive oracle
for the mixture bound), then the loader and diagnostics.json on a finished dry run."""
import json
import math
import shutil

import pytest
import torch

import data
import diagnostics
import synthetic
import train
from datw import datw_weights
from diagnostics import (accuracy, breakdown, by_target, complementarity, diagnose, kd_view,
                         mix_can_be_right, target_accuracy, teacher_view, video_groups, weight_stats)

CLASSES, KINDS = ["a", "b", "c"], {"a": "local", "b": "local", "c": "relational"}


def peak(k, h):
    """Logits (3,) sure of class k by margin h."""
    return h * torch.nn.functional.one_hot(torch.tensor(k), 3).float()


def five_videos():
    """One video per case: both teachers right, only the ViT, only the CNN, neither (but their
    half-half mix is right), only the ViT. Wrong teachers are less sure (3) than right ones (5)."""
    y = torch.tensor([0, 0, 1, 2, 2])
    z_vit = torch.stack([peak(0, 5), peak(0, 5), peak(0, 3), torch.tensor([3.0, 0, 2]), peak(2, 5)])
    z_cnn = torch.stack([peak(0, 5), peak(1, 3), peak(1, 5), torch.tensor([0.0, 3, 2]), peak(0, 3)])
    return z_vit, z_cnn, y


def test_complementarity_counts_each_case_per_group():
    z_vit, z_cnn, y = five_videos()
    comp = breakdown(complementarity, video_groups(y, CLASSES, KINDS), z_vit, z_cnn, y)
    assert comp["all"] == {"both": 20.0, "only_vit": 40.0, "only_cnn": 20.0, "neither": 20.0, "videos": 5}
    local = comp["per_kind"]["local"]  # videos 0, 1, 2
    assert [local[k] for k in ("both", "only_vit", "only_cnn", "neither")] == pytest.approx([100 / 3] * 3 + [0])
    assert comp["per_kind"]["relational"]["only_vit"] == 50.0 == comp["per_kind"]["relational"]["neither"]
    assert comp["per_class"]["b"]["only_cnn"] == 100.0


def test_accuracy_per_class_and_per_kind():
    z_vit, _, y = five_videos()
    acc = breakdown(accuracy, video_groups(y, CLASSES, KINDS), z_vit, y)
    assert acc["all"] == pytest.approx(60.0)
    assert acc["per_class"] == pytest.approx({"a": 100.0, "b": 0.0, "c": 50.0})
    assert acc["per_kind"] == pytest.approx({"local": 200 / 3, "relational": 50.0})
    # A class without videos has no accuracy (None), not 0 %.
    assert breakdown(accuracy, video_groups(y[:3], CLASSES, KINDS), z_vit[:3], y[:3])["per_class"]["c"] is None


def test_oracle_is_the_share_with_a_right_teacher_and_a_mix_can_beat_it():
    z_vit, z_cnn, y = five_videos()
    acc = target_accuracy(z_vit, z_cnn, torch.zeros(5, 3), y)
    assert acc["oracle"] == pytest.approx(80.0)  # both + only_vit + only_cnn
    assert acc["vit"] == pytest.approx(60.0) and acc["cnn"] == pytest.approx(40.0)
    # Video 3: [3, 0, 2] and [0, 3, 2] are both wrong, their mean [1.5, 1.5, 2] is right; so uniform
    # mixing beats the one-teacher oracle, and only oracle_mix bounds every rule.
    assert acc["uniform"] == pytest.approx(100.0) and acc["oracle_mix"] == pytest.approx(100.0)
    assert mix_can_be_right(z_vit, z_cnn, y).tolist() == [True] * 5
    # [3, 0, 1] and [0, 3, 1]: the label needs 3w < 1 and 3(1 - w) < 1, no w does both.
    assert not mix_can_be_right(torch.tensor([[3.0, 0, 1]]), torch.tensor([[0.0, 3, 1]]), torch.tensor([2]))


def naive_mix_can_be_right(z_vit, z_cnn, y):
    """The definition, piece by piece: the argmax of w z_vit + (1 - w) z_cnn changes only where two
    classes tie, so testing 0, 1 and the middle of every piece between ties covers all w."""
    out = []
    for zv, zc, label in zip(z_vit.double(), z_cnn.double(), y):
        ties = [0.0, 1.0]
        for j in range(len(zv)):
            for k in range(j + 1, len(zv)):
                slope = (zv[j] - zc[j]) - (zv[k] - zc[k])  # tie: slope * w + zc[j] - zc[k] = 0
                if slope != 0 and 0 < (w := float((zc[k] - zc[j]) / slope)) < 1:
                    ties.append(w)
        ties.sort()
        tried = ties[:1] + ties[-1:] + [(a + b) / 2 for a, b in zip(ties, ties[1:])]
        out.append(any(int((w * zv + (1 - w) * zc).argmax()) == label for w in tried))
    return out


def test_mix_can_be_right_matches_the_naive_piecewise_oracle_and_bounds_every_rule():
    g = torch.Generator().manual_seed(0)
    z_vit, z_cnn, z_s = (torch.randn(300, 5, generator=g) * 2 for _ in range(3))
    y = torch.randint(0, 5, (300,), generator=g)
    fast = mix_can_be_right(z_vit, z_cnn, y)
    assert fast.tolist() == naive_mix_can_be_right(z_vit, z_cnn, y)
    assert 0 < fast.sum() < 300  # both answers occur: the comparison means something
    acc = target_accuracy(z_vit, z_cnn, z_s, y)
    assert all(acc["oracle_mix"] >= v for v in acc.values())


def test_weight_stats_mean_spread_and_the_share_each_teacher_takes():
    w = torch.tensor([0.95, 0.05, 0.5, 0.92])
    s = weight_stats(w)
    mean = (0.95 + 0.05 + 0.5 + 0.92) / 4
    std = math.sqrt(sum((x - mean) ** 2 for x in (0.95, 0.05, 0.5, 0.92)) / 4)  # of these videos
    assert s == pytest.approx({"mean": mean, "std": std, "vit_takes": 50.0, "cnn_takes": 25.0, "videos": 4})
    assert weight_stats(w[:1])["std"] == 0.0 and weight_stats(w[:0]) is None


def test_datw_weights_per_class_and_kind_in_diagnose():
    # a: identical teachers (w_vit = 1/2 exactly); b: the student repeats the CNN and the ViT is
    # sure and different (the ViT takes it); c: the mirror image (the CNN takes it).
    y = torch.tensor([0, 0, 1, 2])
    z_vit = torch.stack([peak(0, 4), peak(1, 4), peak(0, 20), peak(1, 4)])
    z_cnn = torch.stack([peak(0, 4), peak(1, 4), peak(1, 4), peak(0, 20)])
    z_s = torch.stack([peak(2, 4), peak(2, 4), peak(1, 4), peak(1, 4)])
    out = diagnose({"vit_teacher": z_vit, "cnn_teacher": z_cnn, "student": z_s}, y, CLASSES, KINDS,
                   z_epochs={1: torch.zeros(4, 3)}, w_vit_train={1: 0.4})
    datw = out["weights"]["datw"]
    assert datw["per_class"]["a"] == {"mean": 0.5, "std": 0.0, "vit_takes": 0.0, "cnn_takes": 0.0, "videos": 2}
    assert datw["per_class"]["b"]["vit_takes"] == 100.0 and datw["per_class"]["b"]["mean"] > 0.999
    assert datw["per_class"]["c"]["cnn_takes"] == 100.0 and datw["per_class"]["c"]["mean"] < 0.001
    w_b = datw_weights([z_vit[2:3], z_cnn[2:3]], z_s[2:3])[0, 0].item()
    assert datw["per_kind"]["local"]["mean"] == pytest.approx((0.5 + 0.5 + w_b) / 3)
    assert datw["per_kind"]["local"]["vit_takes"] == pytest.approx(100 / 3)
    # Against a flat student (epoch 1) d = 1/2 for both teachers: the surer one wins, as in entropy.
    first = out["weights"]["datw_first_epoch"]
    assert first["per_class"]["b"]["mean"] > 0.5 > first["per_class"]["c"]["mean"]
    assert out["epochs"] == [{"epoch": 1, "w_vit_train": 0.4, "w_vit_eval": {
        "all": first["all"], "per_kind": first["per_kind"]}}]
    assert "student_ce" not in out["accuracy"]  # a run with --skip-student-ce has none


def test_teacher_view_accuracy_max_probability_and_entropy_at_T_by_hand():
    # [ln 2, 0, 0] -> p = [1/2, 1/4, 1/4], H = 3/2 ln 2; flat logits -> p = 1/3 each, H = ln 3.
    z, y = torch.tensor([[math.log(2), 0.0, 0.0], [0.0, 0.0, 0.0]]), torch.tensor([0, 1])
    v = teacher_view(z, y, T=1.0)
    assert v == pytest.approx({"accuracy": 50.0, "max_prob": (1 / 2 + 1 / 3) / 2,
                               "entropy_T": (1.5 * math.log(2) / math.log(3) + 1) / 2, "clips": 2})
    # The entropy is read at the KD temperature: logits 2z at T = 2 are z at T = 1; max_prob is not.
    v2 = teacher_view(2 * z, y, T=2.0)
    assert v2["entropy_T"] == pytest.approx(v["entropy_T"]) and v2["max_prob"] > v["max_prob"]
    assert teacher_view(z[:0], y[:0], T=1.0) is None


def test_kd_view_counts_disagreements_and_targets_that_contradict_the_label():
    z_vit, z_cnn, y = five_videos()
    kd = kd_view(z_vit, z_cnn, torch.zeros(5, 3), y, T=4.0, rules=["uniform", "vit", "cnn", "camkd"])
    assert kd["disagree"] == pytest.approx(80.0)  # only video 0 has the same argmax
    assert kd["vit_teacher"]["accuracy"] == pytest.approx(60.0) and kd["cnn_teacher"]["clips"] == 5
    # uniform: right everywhere (video 3 by the mix); one teacher: its errors; camkd hands each
    # video to the teacher that is right, and video 3 (p_vit(y) = p_cnn(y)) to the uniform mix.
    assert kd["target_wrong"] == pytest.approx({"uniform": 0.0, "vit": 40.0, "cnn": 60.0, "camkd": 0.0})


def test_by_target_splits_the_videos_and_scores_each_student_on_each_part():
    z_vit, _, y = five_videos()  # the target: the ViT's logits, right on videos 0, 1, 4
    t = z_vit.argmax(-1)  # [0, 0, 0, 0, 2]
    student_ce = 5.0 * torch.nn.functional.one_hot(torch.tensor([0, 2, 1, 2, 2]), 3).float()  # misses 1
    student = 5.0 * torch.nn.functional.one_hot(t, 3).float()  # follows the target everywhere
    out = by_target(z_vit, {"student_ce": student_ce, "student": student}, y)
    right, wrong = out["target_right"], out["target_wrong"]
    assert right["videos"] == 3 and right["accuracy"] == pytest.approx({"student_ce": 200 / 3, "student": 100.0})
    assert wrong["videos"] == 2 and wrong["accuracy"] == pytest.approx({"student_ce": 100.0, "student": 0.0})
    assert wrong["follows_target"] == pytest.approx({"student_ce": 0.0, "student": 100.0})
    assert "follows_target" not in right


# ------------------------------------------------------------------------------------ a real run
def test_diagnostics_json_holds_every_section_for_the_run(diagnosed_run, tiny):
    run, results, diag = diagnosed_run
    assert json.load(open(run / "diagnostics.json")) == diag
    assert diag["videos"] == len(data.HMDB51(tiny, subset="test"))  # the whole evaluation split
    assert diag["classes"] == sorted(synthetic.SYNTHETIC_ACTIONS)
    assert diag["kinds"] == {c: kind for c, (kind, _) in synthetic.SYNTHETIC_ACTIONS.items()}
    assert diag["view"] == 1  # --eval-clips 2, one crop: clip_acc@1 scores the second clip
    assert set(diag["accuracy"]) == {"vit_teacher", "cnn_teacher", "student_ce", "student"}
    for entry in diag["accuracy"].values():
        assert set(entry["per_class"]) == set(diag["classes"])
        assert set(entry["per_kind"]) == {"local", "relational"}
        assert all(0 <= a <= 100 for a in entry["per_class"].values())
    for group in (diag["complementarity"]["all"], *diag["complementarity"]["per_kind"].values()):
        assert group["both"] + group["only_vit"] + group["only_cnn"] + group["neither"] == pytest.approx(100)
    comp, target = diag["complementarity"]["all"], diag["target_accuracy"]["all"]
    assert set(target) == {*diagnostics.RULES, "oracle", "oracle_mix"}
    assert target["oracle"] == pytest.approx(comp["both"] + comp["only_vit"] + comp["only_cnn"])
    assert target["vit"] == pytest.approx(diag["accuracy"]["vit_teacher"]["all"])
    for rule in ("datw", "entropy", "datw_first_epoch"):
        assert 0 < diag["weights"][rule]["all"]["mean"] < 1
    # One row per kept epoch, the logged training-batch mean next to it; epoch 1 is "first epoch".
    assert [r["epoch"] for r in diag["epochs"]] == [1, 2]
    assert [r["w_vit_train"] for r in diag["epochs"]] == [r["w_vit"] for r in results["history"]["student"]]
    assert diag["epochs"][0]["w_vit_eval"]["all"] == diag["weights"]["datw_first_epoch"]["all"]
    assert [len(diag["teacher_history"][t]) for t in ("vit_teacher", "cnn_teacher")] == [1, 1]


def test_kd_view_puts_the_training_clips_beside_the_evaluation_split(diagnosed_run, tiny):
    run, results, diag = diagnosed_run
    kd, acc = diag["kd_view"], diag["accuracy"]
    assert kd["rules"] == ["datw", "uniform"] and diag["settings"]["T"] == results["config"]["T"]
    # The training pass: the student's first-epoch batches (a whole number of --batch-size 4).
    n_train = len(data.HMDB51(tiny, subset="train"))
    assert kd["train"]["vit_teacher"]["clips"] == n_train // 4 * 4 > 0
    for split in ("train", "eval"):
        for t in ("vit_teacher", "cnn_teacher"):
            assert 0 < kd[split][t]["max_prob"] <= 1 and 0 <= kd[split][t]["entropy_T"] <= 1
    # The evaluation column is the rest of diagnostics.json, seen from KD's side.
    assert kd["eval"]["vit_teacher"]["accuracy"] == acc["vit_teacher"]["all"]
    target = diag["target_accuracy"]["all"]
    assert kd["eval"]["target_wrong"] == pytest.approx({r: 100 - target[r] for r in ("datw", "uniform")})
    # The two parts of by_target are all the videos, and each student's accuracy is their mix.
    for parts in diag["by_target"].values():
        right, wrong = parts["target_right"], parts["target_wrong"]
        assert right["videos"] + wrong["videos"] == diag["videos"]
        for m in ("student_ce", "student"):
            mixed = sum(p["videos"] * (p["accuracy"][m] or 0) for p in (right, wrong)) / diag["videos"]
            assert mixed == pytest.approx(acc[m]["all"])


def test_fit_keeps_the_student_of_every_epoch_and_the_last_is_student_pt(diagnosed_run):
    run = diagnosed_run[0]
    final = torch.load(run / "student.pt", weights_only=True)
    first, last = (torch.load(run / "student_epochs" / f"epoch_0{e}.pt", weights_only=True) for e in (1, 2))
    assert set(first) == set(final)  # the plain student: no SDD head, no tap
    assert all(torch.equal(last[k], final[k]) for k in final)
    assert not all(torch.equal(first[k], final[k]) for k in final)


def test_accuracy_on_the_centred_view_is_train_evaluate_clip_acc(diagnosed_run):
    run, _, diag = diagnosed_run
    r = diagnostics.load_run(str(run), workers=0, device="cpu")
    for name, (model, spec) in r.nets.items():
        clip_acc = train.evaluate(model, r.loader, spec, r.args)["clip_acc@1"]
        assert diag["accuracy"][name]["all"] == pytest.approx(clip_acc, abs=1e-9), name


def test_a_missing_piece_is_named_with_what_makes_it(diagnosed_run, tmp_path):
    with pytest.raises(SystemExit, match="config.json is missing; run `python train.py"):
        diagnostics.main([str(tmp_path), "--workers", "0", "--device", "cpu"])
    run = diagnosed_run[0]
    for name in ("config.json", "results.json", "ckpt_student_ce.pt"):
        shutil.copy(run / name, tmp_path / name)
    with pytest.raises(SystemExit, match="student.pt is missing"):
        diagnostics.main([str(tmp_path), "--workers", "0", "--device", "cpu"])
