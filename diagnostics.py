"""diagnostics.py -- what the method did in a finished run, per class, per teacher, per weighting.

Reading guide
-------------
A run's results.json says how accurate each model is; this file says why, on the run's own
evaluation split, with its trained models (nothing is retrained). Every number scores ONE view per
video, the one clip_acc@1 scores (train.evaluate's centred clip, centre crop), so a model's
overall accuracy here is its clip_acc@1 in results.json. docs/diagnostics.md says how to read each.

  accuracy          clip accuracy of the two teachers, student_ce and student, per class and (on
                    the synthetic set) per kind of class, local or relational (synthetic.py).
  complementarity   share of videos both teachers get right, only the ViT, only the CNN, neither:
                    what a per-sample choice of teacher could gain at most.
  target_accuracy   accuracy of the fused KD target argmax(w_vit z_vit + w_cnn z_cnn) under each
                    weighting rule of datw.py (w from the final student where the rule reads it),
                    and two oracles that read the labels: "oracle" gives each video to a teacher
                    that is right when one is (both + only_vit + only_cnn); "oracle_mix" counts
                    a video when ANY w in [0, 1] makes the target right. Note: oracle_mix is the
                    upper bound for every per-sample weighting; "oracle" is not quite one, as a
                    mix of two wrong teachers can be right.
  weights           w_vit under DATW (teachers vs the final student, and vs the student after
                    its first distillation epoch) and under the entropy rule: mean and std over
                    videos, and the share of videos one teacher takes (w > TAKES).
  epochs            DATW's w_vit on the evaluation split against the student of every epoch
                    (plumbing.fit keeps them in <run>/student_epochs/), next to the mean w_vit
                    over the training batches that the run logged (its --weighting rule's).
  kd_view           what the KD term is given, on the training clips as the student sees them
                    (one pass in the order of the student's first epoch, training augmentation)
                    beside the evaluation split: each teacher's accuracy, mean max-probability
                    and normalised entropy of softmax(z / T) at the KD temperature T, how often
                    the two teachers disagree, how often the fused target contradicts the label
                    (under the run's --weighting rule and uniform).
  by_target         the evaluation videos split by "fused target right / wrong", with student_ce's
                    and the student's accuracy on each part: does distillation lose exactly where
                    the target contradicts the label?

Top to bottom: the pure functions on logits and labels (the tests check them on hand-made
numbers), `diagnose` (all of them -> the content of diagnostics.json), then the loader that
rebuilds a run from its folder (`load_run`, `collect_logits`), the tables and `main`:
    python diagnostics.py RUN_DIR [--workers N] [--device cpu]   -> RUN_DIR/diagnostics.json
Run it from the folder train.py ran in: config.json's data and teacher-cache paths are relative.
"""
import argparse
import json
import os
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

import models
import options
import plumbing
import synthetic
import train
from checkpoints import load_state
from data import EvalBatch
from datw import confidence, fuse_logits, teacher_weights

# datw.teacher_weights' rules, teachers [ViT, CNN]; camkd reads the labels, as a training step can
RULES = ("uniform", "entropy", "datw", "camkd", "vit", "cnn")
TAKES = 0.9  # a teacher "takes" a video when its weight exceeds this


# ------------------------------------------------------------------ pure: logits, labels -> numbers
def accuracy(z, y):
    """Top-1 accuracy in % of logits z (N, C) against labels y (N,); None when N = 0."""
    return share(z.argmax(-1) == y)


def share(mask):
    """% of True in a bool mask (N,), from the count (exact, unlike a float32 mean); None if N = 0."""
    return 100.0 * mask.sum().item() / len(mask) if len(mask) else None


def video_groups(y, classes, kinds):
    """Boolean masks (N,) over the videos: {"all", "per_kind": {kind}, "per_class": {class}}.
    kinds maps class name -> kind; empty when the classes have none (real HMDB51)."""
    def of(names):
        return torch.isin(y, torch.tensor([i for i, c in enumerate(classes) if c in names]))
    return {"all": torch.ones_like(y, dtype=torch.bool),
            "per_kind": {k: of({c for c in kinds if kinds[c] == k}) for k in sorted(set(kinds.values()))},
            "per_class": {c: y == i for i, c in enumerate(classes)}}


def breakdown(fn, groups, *per_video):
    """fn applied to the videos of each group of `video_groups` -> the same nesting of results.
    per_video: tensors whose first axis is the video (logits (N, C), labels (N,), weights (N,))."""
    def on(mask):
        return fn(*(t[mask] for t in per_video))
    return {level: on(m) if level == "all" else {name: on(mm) for name, mm in m.items()}
            for level, m in groups.items()}


def complementarity(z_vit, z_cnn, y):
    """% of videos both teachers get right, only the ViT, only the CNN, neither (sum 100)."""
    if not len(y):
        return None
    right_vit, right_cnn = z_vit.argmax(-1) == y, z_cnn.argmax(-1) == y  # (N,) each
    return {"both": share(right_vit & right_cnn), "only_vit": share(right_vit & ~right_cnn),
            "only_cnn": share(~right_vit & right_cnn), "neither": share(~right_vit & ~right_cnn),
            "videos": len(y)}


def oracle_weights(z_vit, z_cnn, y):
    """(N, 2) one-hot [w_vit, w_cnn]: the CNN where only it is right, else the ViT (reads y)."""
    only_cnn = (z_cnn.argmax(-1) == y) & (z_vit.argmax(-1) != y)  # (N,)
    return torch.stack([~only_cnn, only_cnn], dim=1).float()


def mix_can_be_right(z_vit, z_cnn, y):
    """(N,) bool: some w in [0, 1] makes argmax(w z_vit + (1 - w) z_cnn) the label (reads y).

    The margin of the label over class j is linear in w:
        m_j(w) = b_j + a_j w,  b_j = z_cnn[y] - z_cnn[j],  a_j = (z_vit[y] - z_vit[j]) - b_j,
    so each class j != y bounds w from one side: w > -b_j / a_j where a_j > 0, w < -b_j / a_j where
    a_j < 0 (and a_j = 0 needs b_j > 0). The label wins for some w iff lo < hi on [0, 1].
    """
    z_vit, z_cnn = z_vit.double(), z_cnn.double()  # float64: the ratios compare near-ties
    label = y[:, None]  # (N, 1)
    b = z_cnn.gather(1, label) - z_cnn  # (N, C)
    a = z_vit.gather(1, label) - z_vit - b  # (N, C)
    others = torch.ones_like(b, dtype=torch.bool).scatter(1, label, False)  # j != y
    bound = -b / torch.where(a == 0, torch.ones_like(a), a)  # (N, C); a = 0 handled apart
    lo = torch.where(others & (a > 0), bound, -torch.inf).amax(1).clamp(min=0.0)  # (N,)
    hi = torch.where(others & (a < 0), bound, torch.inf).amin(1).clamp(max=1.0)  # (N,)
    flat_ok = torch.where(others & (a == 0), b > 0, True).all(1)  # (N,)
    return flat_ok & (lo < hi)


def fused_target(rule, z_vit, z_cnn, z_s, y, T_c=1.0, tau_w=0.1):
    """z_target = sum_k w_k z_k (N, C), w from datw.teacher_weights' `rule` against the student's
    logits z_s (the rules that read it) and the labels y (camkd)."""
    w = teacher_weights(rule, [z_vit, z_cnn], z_s, T_c=T_c, tau_w=tau_w, y=y)  # (N, 2)
    return fuse_logits([z_vit, z_cnn], w)


def target_accuracy(z_vit, z_cnn, z_s, y, T_c=1.0, tau_w=0.1):
    """Accuracy in % of the fused target argmax(sum_k w_k z_k) under each rule of RULES (w from
    datw.teacher_weights against the student's logits z_s), "oracle" and "oracle_mix"."""
    if not len(y):
        return None
    out = {rule: accuracy(fused_target(rule, z_vit, z_cnn, z_s, y, T_c, tau_w), y) for rule in RULES}
    out["oracle"] = accuracy(fuse_logits([z_vit, z_cnn], oracle_weights(z_vit, z_cnn, y)), y)
    out["oracle_mix"] = share(mix_can_be_right(z_vit, z_cnn, y))
    return out


def teacher_view(z, y, T):
    """What KD receives from one teacher over N clips -> {"accuracy" (%), "max_prob": the mean of
    max softmax(z) (the teacher's own confidence, at temperature 1), "entropy_T": the mean of
    H(softmax(z / T)) / log C at the KD temperature T (0 one-hot, 1 uniform), "clips": N}."""
    if not len(y):
        return None
    p_max = torch.softmax(z.float(), dim=-1).amax(dim=-1)  # (N,)
    H_T = 1.0 - confidence(z, T)  # (N,): datw's c at T_c = T is 1 - the normalised entropy
    return {"accuracy": accuracy(z, y), "max_prob": p_max.double().mean().item(),
            "entropy_T": H_T.double().mean().item(), "clips": len(y)}


def kd_view(z_vit, z_cnn, z_s, y, T, rules, T_c=1.0, tau_w=0.1):
    """What the KD term is given on N clips: each teacher's `teacher_view`, the % of clips where
    the teachers' argmaxes differ ("disagree"), and per rule of `rules` the % of clips where the
    fused target's argmax is not the label ("target_wrong"; w against the student's z_s)."""
    if not len(y):
        return None
    def wrong(rule):  # (N,) bool: the fused target's class is not the label
        return fused_target(rule, z_vit, z_cnn, z_s, y, T_c, tau_w).argmax(-1) != y
    return {"vit_teacher": teacher_view(z_vit, y, T), "cnn_teacher": teacher_view(z_cnn, y, T),
            "disagree": share(z_vit.argmax(-1) != z_cnn.argmax(-1)),
            "target_wrong": {rule: share(wrong(rule)) for rule in rules}}


def by_target(z_target, z_students, y):
    """The videos split by whether the fused target's argmax is the label -> {"target_right",
    "target_wrong": {"videos", "accuracy": {student: %}}}, and on the wrong part "follows_target":
    {student: % of its videos where the student predicts the target's (wrong) class}.
    z_target: (N, C); z_students: {"student_ce", "student": (N, C)} (either may be absent)."""
    t = z_target.argmax(-1)  # (N,): the class KD pulls each video towards
    wrong = t != y  # (N,)
    out = {part: {"videos": int(mask.sum()),
                  "accuracy": {m: accuracy(z[mask], y[mask]) for m, z in z_students.items()}}
           for part, mask in (("target_right", ~wrong), ("target_wrong", wrong))}
    out["target_wrong"]["follows_target"] = {m: share(z[wrong].argmax(-1) == t[wrong])
                                             for m, z in z_students.items()}
    return out


def weight_stats(w_vit):
    """w_vit (N,) -> its mean, its spread over the videos (std, correction 0: of these videos
    themselves, 0 for one video) and the % of videos the ViT takes (w_vit > TAKES) and the CNN
    takes (w_cnn = 1 - w_vit > TAKES)."""
    if not len(w_vit):
        return None
    w = w_vit.double()
    return {"mean": w.mean().item(), "std": w.std(correction=0).item(),
            "vit_takes": share(w > TAKES), "cnn_takes": share(1 - w > TAKES), "videos": len(w)}


def diagnose(z, y, classes, kinds, T_c=1.0, tau_w=0.1, z_epochs=None, w_vit_train=None, T=4.0,
             weighting="datw", z_train=None, y_train=None):
    """Everything above -> the content of diagnostics.json.

    z: {"vit_teacher", "cnn_teacher", "student", and "student_ce" unless skipped: (N, C) logits};
    y: (N,) labels; kinds: class -> kind ({} for none); z_epochs: {epoch: (N, C) logits of the
    student after that epoch}; w_vit_train: {epoch: the logged mean w_vit of its training batches};
    T: the KD temperature; weighting: the run's --weighting rule; z_train, y_train: the logits
    {"vit_teacher", "cnn_teacher", "student": (M, C)} and labels (M,) of the training clips.
    """
    groups = video_groups(y, classes, kinds)
    z_vit, z_cnn = z["vit_teacher"], z["cnn_teacher"]
    z_epochs, w_vit_train = z_epochs or {}, w_vit_train or {}
    rules = list(dict.fromkeys((weighting, "uniform")))  # the run's rule, and uniform beside it
    students = {m: z[m] for m in ("student_ce", "student") if m in z}

    def w_vit(rule, z_s):  # (N,): the ViT's share of the target, teachers = [ViT, CNN]
        return teacher_weights(rule, [z_vit, z_cnn], z_s, T_c=T_c, tau_w=tau_w)[:, 0]

    first = min(z_epochs, default=None)  # the student after its first distillation epoch
    no_classes = {level: groups[level] for level in ("all", "per_kind")}  # per epoch: kinds only
    return {
        "videos": len(y), "classes": list(classes), "kinds": dict(kinds),
        "settings": {"T_c": T_c, "tau_w": tau_w, "takes": TAKES, "T": T, "weighting": weighting},
        "accuracy": {m: breakdown(accuracy, groups, z[m], y) for m in z},
        "complementarity": breakdown(complementarity, groups, z_vit, z_cnn, y),
        "target_accuracy": breakdown(lambda *t: target_accuracy(*t, T_c=T_c, tau_w=tau_w), groups,
                                     z_vit, z_cnn, z["student"], y),
        "weights": {"datw": breakdown(weight_stats, groups, w_vit("datw", z["student"])),
                    "entropy": breakdown(weight_stats, groups, w_vit("entropy", z["student"])),
                    "datw_first_epoch": None if first is None else
                    breakdown(weight_stats, groups, w_vit("datw", z_epochs[first]))},
        "epochs": [{"epoch": e, "w_vit_train": w_vit_train.get(e),
                    "w_vit_eval": breakdown(weight_stats, no_classes, w_vit("datw", z_epochs[e]))}
                   for e in sorted(z_epochs)],
        "kd_view": {"rules": rules,
                    "train": None if z_train is None else kd_view(
                        z_train["vit_teacher"], z_train["cnn_teacher"], z_train["student"], y_train,
                        T, rules, T_c, tau_w),
                    "eval": kd_view(z_vit, z_cnn, z["student"], y, T, rules, T_c, tau_w)},
        "by_target": {rule: by_target(fused_target(rule, z_vit, z_cnn, z["student"], y, T_c, tau_w),
                                      students, y) for rule in rules}}


# ------------------------------------------------------------------------- a finished run's models
def need(path, fix):
    """path, or stop saying which file is missing and what makes it."""
    if not os.path.exists(path):
        raise SystemExit(f"diagnostics.py: {path} is missing; {fix}")
    return path


def read_json(path, fix):
    with open(need(path, fix)) as f:
        return json.load(f)


def load_teacher(args, role, name, num_classes, root, n_train):
    """The run's trained teacher (its --<role>-teacher-ckpt or the teacher cache) and its history."""
    model = models.build_model(name, num_classes)
    ckpt = getattr(args, f"{role}_teacher_ckpt")
    if ckpt:
        fix = f"it is the run's --{role}-teacher-ckpt (config.json): run from the folder train.py ran in"
        return load_state(model, need(ckpt, fix), f"--{role}-teacher-ckpt"), []
    cache = plumbing.TeacherCache(args, role, name, root, n_train)
    need(cache.path, f"the {role} teacher is not in the teacher cache. Run diagnostics.py from the "
         "folder train.py ran in (config.json's --cache-dir and data paths are relative to it) "
         "and without torchrun; or rerun the run's train.py command, which trains and caches it")
    cache.load(model)
    return model, cache.metrics["history"]


class Run(NamedTuple):
    args: argparse.Namespace  # train.py's resolved arguments (config.json)
    classes: list  # class names, index = label
    nets: dict  # {"vit_teacher", "cnn_teacher", "student_ce" (unless skipped), "student": (model, spec)}
    epochs: dict  # {epoch: the student after that epoch} (absent in runs made before they were kept)
    loader: DataLoader  # the evaluation split's (plumbing.eval_loader)
    train_loader: DataLoader  # the training split's, as the student's first epoch draws it
    results: dict  # results.json
    teacher_history: dict  # {"vit_teacher", "cnn_teacher": their fine-tuning history rows}


def load_run(run_dir, workers=None, device="cpu"):
    """A finished run rebuilt from run_dir (frozen models on `device`) -> Run."""
    redo = f"run `python train.py --out {run_dir}` (with the run's flags) to the end"
    args = train.get_args_parser().parse_args([])
    # (today's names: a run made before flags were renamed holds the old ones)
    vars(args).update(plumbing.current_names(read_json(os.path.join(run_dir, "config.json"), redo)))
    results = read_json(os.path.join(run_dir, "results.json"), redo)
    args.workers = options.default_workers(device) if workers is None else workers
    args.device = device
    preset = models.PRESETS[args.preset]
    train_set, eval_set, root = plumbing.build_datasets(args, preset["clip"])
    classes = (train_set.dataset if isinstance(train_set, Subset) else train_set).classes
    nets, history = {}, {}
    for role in plumbing.TEACHERS:
        nets[f"{role}_teacher"], history[f"{role}_teacher"] = load_teacher(
            args, role, preset[f"{role}_teacher"], len(classes), root, len(train_set))
    student = lambda: models.build_model(preset["student"], len(classes))
    if not args.skip_student_ce:  # a plumbing.save_checkpoint file: the net is under "net"
        ck = torch.load(need(os.path.join(run_dir, "ckpt_student_ce.pt"), redo), map_location="cpu",
                        weights_only=True)
        nets["student_ce"] = student()
        nets["student_ce"].load_state_dict(ck["net"])
    nets["student"] = load_state(student(), need(os.path.join(run_dir, "student.pt"), redo), "student")
    epochs = {}
    for e in range(1, args.epochs + 1):  # absent in runs made before plumbing.fit kept them
        path = plumbing.student_epoch_path(run_dir, e)
        if os.path.exists(path):
            epochs[e] = load_state(student(), path, "student")
    specs = {m: models.input_spec(preset["student" if m.startswith("student") else m]) for m in nets}
    nets = {m: (train.frozen(net.to(device)), specs[m]) for m, net in nets.items()}
    epochs = {e: train.frozen(net.to(device)) for e, net in epochs.items()}
    # The training clips as the distilled student's first epoch draws them: the same seeded order
    # (plumbing.fit's key) and training augmentation; main seeds the augmentation like fit does.
    train_loader = plumbing.train_loader(train_set, args, (args.seed, "student", 0))
    return Run(args, classes, nets, epochs, plumbing.eval_loader(eval_set, args), train_loader, results,
               history)


@torch.no_grad()
def collect_logits(nets, loader, view, device, desc="diagnostics"):
    """One pass over a split -> ({name: (N, C) float32 logits}, (N,) labels). nets: {name: (model,
    input spec)}. An evaluation loader: the view `view` of each video, undecodable videos left out
    as in evaluate; a training loader ((clips, labels) batches): its one augmented clip per video."""
    z, labels = {name: [] for name in nets}, []
    for batch in tqdm(loader, desc=desc, leave=False):
        if isinstance(batch, EvalBatch):
            if batch.clips is None:  # every video of this batch failed to decode
                continue
            # One view per video comes as (B, 3, L, H, W): -> (B, 1, 3, L, H, W) like several.
            views = batch.clips if batch.clips.dim() == 6 else batch.clips[:, None]
            clip, y = views[:, view], batch.labels  # (B, V, 3, L, H, W) -> (B, 3, L, H, W): scored view
        else:
            clip, y = batch  # a training batch: (B, 3, L, H, W), (B,)
        clip = clip.to(device)
        for name, (model, spec) in nets.items():
            z[name].append(model(models.adapt_input(clip, spec)).float().cpu())  # (B, C)
        labels.append(y)
    return {name: torch.cat(zs) for name, zs in z.items()}, torch.cat(labels)


# ---------------------------------------------------------------------------------------- tables
def print_table(title, header, rows):
    """An aligned text table: the first column left-aligned, the others right-aligned."""
    cells = [header] + rows
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for r in cells:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


def fmt(x, digits=1):
    return "-" if x is None else f"{x:.{digits}f}"


def at(d, row, key=None):
    """The entry of a `breakdown` d for a table row ("all", None) / ("per_kind" | "per_class",
    name), or its field `key`; None where d or the entry is None (no videos, no snapshots)."""
    level, name = row
    e = None if d is None else d["all"] if level == "all" else d[level][name]
    return e if key is None or e is None else e[key]


def print_tables(out):
    kinds, acc, w = out["kinds"], out["accuracy"], out["weights"]
    # Rows: each class with its kind, then all videos and each kind's.
    rows = ([(("per_class", c), c, kinds.get(c, "-")) for c in out["classes"]]
            + [(("all", None), "all", "")] + [(("per_kind", k), k, "") for k in sorted(set(kinds.values()))])
    print_table(f"clip_acc@1 (%) on the centred view, {out['videos']} videos", ["class", "kind", *acc],
                [[label, kind, *(fmt(at(acc[m], row)) for m in acc)] for row, label, kind in rows])
    groups = [r for r in rows if r[0][0] != "per_class"]
    print_table("teacher complementarity (% of videos)",
                ["videos of", "both right", "only ViT", "only CNN", "neither"],
                [[label, *(fmt(at(out["complementarity"], row, k))
                           for k in ("both", "only_vit", "only_cnn", "neither"))] for row, label, _ in groups])
    print_table("accuracy of the fused target argmax(w_vit z_vit + w_cnn z_cnn) (%)",
                ["rule", *(label for _, label, _ in groups)],
                [[rule, *(fmt(at(out["target_accuracy"], row, rule)) for row, _, _ in groups)]
                 for rule in (*RULES, "oracle", "oracle_mix")])
    print_table(f"w_vit: DATW vs the final student (mean, std; % of videos a teacher takes, w > {TAKES}), "
                "DATW vs the epoch-1 student, entropy rule",
                ["class", "kind", "datw", "std", "ViT takes", "CNN takes", "epoch 1", "entropy"],
                [[label, kind, fmt(at(w["datw"], row, "mean"), 2), fmt(at(w["datw"], row, "std"), 2),
                  fmt(at(w["datw"], row, "vit_takes")), fmt(at(w["datw"], row, "cnn_takes")),
                  fmt(at(w["datw_first_epoch"], row, "mean"), 2), fmt(at(w["entropy"], row, "mean"), 2)]
                 for row, label, kind in rows])
    if out["epochs"]:
        print_table("w_vit by epoch: DATW on the evaluation split vs that epoch's student; the mean "
                    f"over the training batches (--weighting {out['settings']['weighting']})",
                    ["epoch", *(label for _, label, _ in groups), "train"],
                    [[str(r["epoch"]), *(fmt(at(r["w_vit_eval"], row, "mean"), 2) for row, _, _ in groups),
                      fmt(r["w_vit_train"], 2)] for r in out["epochs"]])
    print_kd_view(out)


def print_kd_view(out):
    """What KD is given, training clips beside the evaluation split; then the evaluation videos
    split by whether the fused target is right."""
    kd, T = out["kd_view"], out["settings"]["T"]
    splits = [sp for sp in ("train", "eval") if kd[sp] is not None]

    def row(label, pick, digits=1):  # one quantity, one column per split
        return [label, *(fmt(pick(kd[sp]), digits) for sp in splits)]
    quantities = (("accuracy", "accuracy (%)", 1), ("max_prob", "mean max-probability", 3),
                  ("entropy_T", f"entropy of softmax(z/{T:g}) / log C", 3))
    rows = [row(f"{who} {label}", lambda v, t=f"{role}_teacher", k=key: v[t][k], digits)
            for role, who in (("vit", "ViT"), ("cnn", "CNN")) for key, label, digits in quantities]
    rows.append(row("teachers disagree (% of clips)", lambda v: v["disagree"]))
    rows += [row(f"fused target contradicts the label, {rule} (%)", lambda v, r=rule: v["target_wrong"][r])
             for rule in kd["rules"]]
    print_table("what KD is given: the training clips (the student's first-epoch batches, training "
                "augmentation) and the evaluation split (centred view)",
                ["", *(f"{sp} ({kd[sp]['vit_teacher']['clips']} clips)" for sp in splits)], rows)
    for rule, parts in out["by_target"].items():
        students = list(parts["target_right"]["accuracy"])
        follows = parts["target_wrong"]["follows_target"]
        print_table(f"evaluation videos by the fused target ({rule}): clip_acc@1 (%) of each student; "
                    "on the wrong part, % of videos where it predicts the target's class",
                    ["fused target", "videos", *students, *(f"{m} follows" for m in students)],
                    [[part.replace("target_", ""), str(p["videos"]),
                      *(fmt(p["accuracy"][m]) for m in students),
                      *(fmt(follows[m]) if part == "target_wrong" else "" for m in students)]
                     for part, p in parts.items()])


# ------------------------------------------------------------------------------------------- main
def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run_dir", help="a finished train.py run (its --out), e.g. runs/default")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers " + options.WORKERS_HELP)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def main(argv=None):
    a = get_args_parser().parse_args(argv)
    run = load_run(a.run_dir, a.workers, a.device)
    args, nets, epochs = run.args, run.nets, run.epochs
    # train.evaluate's clip_acc@1 view among the clip-major eval_clips x eval_crops views
    view = (args.eval_clips // 2) * args.eval_crops + args.eval_crops // 2
    z, y = collect_logits({**nets, **{e: (m, nets["student"][1]) for e, m in epochs.items()}},
                          run.loader, view, a.device)
    # The training clips through the teachers (the KD targets the student was given) and the final
    # student (the rules that read a student); augmentation seeded as plumbing.fit seeds epoch 1.
    plumbing.seed_everything(args.seed, "student", 0, "rng")
    z_train, y_train = collect_logits({m: nets[m] for m in ("vit_teacher", "cnn_teacher", "student")},
                                      run.train_loader, None, a.device, desc="diagnostics, training clips")
    kinds = ({c: synthetic.SYNTHETIC_ACTIONS[c][0] for c in run.classes
              if c in synthetic.SYNTHETIC_ACTIONS} if args.dataset == "synthetic" else {})
    w_vit_train = {r["epoch"]: r.get("w_vit") for r in run.results["history"].get("student", [])}
    out = diagnose({m: z[m] for m in nets}, y, run.classes, kinds, T_c=args.T_c, tau_w=args.tau_w,
                   z_epochs={e: z[e] for e in epochs}, w_vit_train=w_vit_train, T=args.T,
                   weighting=args.weighting, z_train=z_train, y_train=y_train)
    out.update(run=a.run_dir, view=view, teacher_history=run.teacher_history)
    path = os.path.join(a.run_dir, "diagnostics.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print_tables(out)
    print(f"\nwritten: {path}")
    return out


if __name__ == "__main__":
    main()
