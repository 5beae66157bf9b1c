"""train.py -- the method end to end: teachers -> CE baseline -> distillation -> report.

Reading guide
-------------
Read top to bottom: arguments -> data -> teachers -> one training step -> evaluation -> main.

    stage 1  vit_teacher, cnn_teacher
                         each teacher (ViT: MViTv2, CNN: X3D-M) starts from Kinetics-400 weights
                         (tiny preset: the zoo in weights/, pretrain.py) or from scratch
                         (--teacher-init), is fine-tuned on the training split with
                         cross-entropy, all of it or only its top (--vit/--cnn-teacher-finetune),
                         or loaded (--vit/--cnn-teacher-ckpt); then it is frozen. The
                         Kinetics-400 files of every model are found (--pretrained-dir,
                         torch.hub's cache) or downloaded before any data is read;
                         --check-weights does only that.
    stage 2  student_ce  the student trained with cross-entropy only: the baseline that shows
                         what distillation adds (--skip-student-ce skips it).
    stage 3  student     the paper's objective (Paper: DATW + SDD + RKD on top of CE):
                             loss = CE + alpha * KD_DATW + beta * SDD + gamma * RKD,
                             RKD  = w_d * L_D + w_a * L_A   (Park et al.'s 25 and 50),
                         so with gamma = 0.01 the distance loss weighs 0.25 and the angle loss
                         0.5. The SDD head (phi projections + SDB) trains with the student and is
                         dropped from the saved student. (--skip-student stops after stage 2.)
    report               clip_acc@1 / video_acc@1 of all four models (best and last epoch),
                         params, GMACs, and <out>/results.json, student.pt (+ student.json), log.csv,
                         config.json.

Teachers are frozen: eval() mode, requires_grad False, outputs under torch.no_grad(), so neither
their weights nor their BatchNorm statistics can move. Both student stages start from the same
initial weights and see the same batches and augmentations (a paired comparison).
The epochs of a stage (`plumbing.fit`), seeds, resume and the teacher cache are plumbing.py, the
report files reports.py; every epoch starts from an RNG state seeded by (seed, the stage's data
key, epoch), so --resume ends as a run never stopped.
DDP: `torchrun --nproc_per_node=N train.py ...`.
"""
import math
import time
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Subset
from tqdm import tqdm

import models
import options
import plumbing
import reports
from checkpoints import WeightsError, load_state
from datw import dist_loss, fuse_logits, kd_loss, teacher_weights
from faults import apply_fault
from features import FeatureTap, feature_dims
from options import get_args_parser  # the flags: options.py
from plumbing import is_main, log, seed_everything
from rkd import rkd_loss
from sdd import SDDHead, sdd_loss

class NonFiniteLoss(RuntimeError): ...


class Teacher(NamedTuple):
    tap: FeatureTap  # the frozen model with its feature taps
    spec: models.InputSpec  # its native input


def frozen(model):
    """Teachers: eval() (BatchNorm uses, never updates, its running statistics), no gradients."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# --------------------------------------------------------------------------------------- models
class Distiller(nn.Module):
    """Student (with its feature tap) + training-only SDD head, as ONE module so that DDP sees
    every trainable parameter used in every step. The deployable student is `self.tap.model`."""

    def __init__(self, student, sdd_head=None):
        super().__init__()
        self.tap, self.sdd = FeatureTap(student), sdd_head

    @classmethod
    def for_teachers(cls, student, spec_s, teachers, sdd_target="residual", with_sdd=True):
        """The student with an SDD head sized for these teachers' maps (no head when beta = 0)."""
        c_s, c_vit, c_cnn = (feature_dims(m, spec)["map"] for m, spec in  # channels of each "map"
                             ((student, spec_s), (teachers["vit"].tap.model, teachers["vit"].spec),
                              (teachers["cnn"].tap.model, teachers["cnn"].spec)))
        return cls(student, SDDHead(c_s, c_vit, c_cnn, target=sdd_target) if with_sdd else None)

    def forward(self, x, f_vit=None, f_cnn=None):
        z_s, feats_s = self.tap(x)
        pred, target = self.sdd(feats_s["map"], f_vit, f_cnn) if self.sdd is not None else (None, None)
        return z_s, feats_s, pred, target


# -------------------------------------------------------------------------- one epoch of training
def mixup(clip, y, alpha):
    """Mixed clips for function matching: x = lam x + (1 - lam) x[perm], lam ~ Beta(alpha, alpha),
    one lam per batch. -> (mixed uint8 clip (B, 3, L, H, W), the partners' labels y[perm], lam).
    The teachers see the mixed clip; the CE term reads both labels with the same lam."""
    lam = torch.distributions.Beta(alpha, alpha).sample().item()
    perm = torch.randperm(clip.shape[0], device=clip.device)
    mixed = lam * clip.float() + (1 - lam) * clip[perm].float()  # (B, 3, L, H, W) float
    return mixed.round().to(torch.uint8), y[perm], lam  # back to the loader's uint8 for adapt_input


def kd_term(z_s, z_target, y, args):
    """The KD term and the share of clips it reads: all, or (--kd-gate label) those whose fused
    target's top class is the label, summed over them and divided by the whole batch B."""
    loss = dist_loss if args.kd_loss == "dist" else kd_loss
    if args.kd_gate == "none":
        return loss(z_s, z_target, T=args.T), z_s.new_ones((), dtype=torch.float32)
    keep = z_target.argmax(dim=1) == y  # (B,) the target agrees with the label
    share = keep.float().mean()
    if not keep.any():
        return z_s.new_zeros((), dtype=torch.float32), share
    return loss(z_s[keep], z_target[keep], T=args.T) * share, share  # mean over kept x kept / B


def distillation_terms(z_s, f_s, pred, target, z_vit, f_vit, z_cnn, y, args, mix=None):
    """The loss terms of one batch (each a float32 scalar) and the mean DATW weights (logged).
    mix: (y_b, lam) when the clips are mixed (--mixup)."""
    # DATW: per-sample weights over the teachers [ViT, CNN], then z_target = sum_k w_k z_k
    w = teacher_weights(args.weighting, [z_vit, z_cnn], z_s, T_c=args.T_c, tau_w=args.tau_w, y=y)
    zero = z_s.new_zeros((), dtype=torch.float32)  # a switched-off term costs nothing
    ce = F.cross_entropy(z_s.float(), y, reduction="mean")
    if mix is not None:  # mixed clips: the labels mixed with the clips' own lam
        ce = mix[1] * ce + (1 - mix[1]) * F.cross_entropy(z_s.float(), mix[0], reduction="mean")
    kd, kept = kd_term(z_s, fuse_logits([z_vit, z_cnn], w), y, args)
    return {"ce": ce, "kd": kd, "kd_kept": kept,
            "sdd": sdd_loss(pred, target) if pred is not None else zero,
            "rkd": rkd_loss(f_s["embed"], f_vit["embed"], w_d=args.rkd_distance_weight,
                            w_a=args.rkd_angle_weight) if args.gamma > 0 else zero,
            "w_vit": w[:, 0].mean(), "w_cnn": w[:, 1].mean()}


def train_one_epoch(net, loader, optimizer, scheduler, scaler, args, spec, teachers=None,
                    epoch=0, max_steps=None, desc="train"):
    """One epoch of `net`, whose input is `spec`. Without teachers: cross-entropy only (teacher
    fine-tuning, student_ce). With teachers = {"vit": Teacher, "cnn": Teacher}: the paper's
    distillation loss, `net` the student (a Distiller)."""
    net.train()
    sums, n = {}, 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not is_main(), total=max_steps or len(loader))
    for step, (clip, y) in enumerate(bar):
        if max_steps is not None and step >= max_steps:
            break
        clip, y = clip.to(args.device, non_blocking=True), y.to(args.device, non_blocking=True)
        with torch.autocast("cuda", enabled=args.amp and args.device.startswith("cuda")):
            if teachers is None:
                z = net(models.adapt_input(clip, spec))  # (B, C) logits of a plain model
                terms = {"ce": F.cross_entropy(z.float(), y, reduction="mean")}
                loss = terms["ce"]
            else:
                mix = None
                if args.mixup > 0:  # one batch of mixed clips for all three models
                    clip, y_b, lam = mixup(clip, y, args.mixup)
                    mix = (y_b, lam)
                with torch.no_grad():  # teachers only provide targets: no graph, no gradient
                    z, f = {}, {}
                    for role, t in teachers.items():
                        z[role], f[role] = t.tap(models.adapt_input(clip, t.spec))
                    r = args.fault_teacher  # --fault: an experiment's deliberately faulty teacher
                    z[r] = apply_fault(z[r], args.fault, args.fault_classes)
                z_s, f_s, pred, target = net(models.adapt_input(clip, spec), f["vit"]["map"], f["cnn"]["map"])
                terms = distillation_terms(z_s, f_s, pred, target, z["vit"], f["vit"], z["cnn"], y, args, mix)
                # Paper: L = CE + alpha * KD_DATW + beta * SDD + gamma * RKD (--ce-weight: 1)
                loss = args.ce_weight * terms["ce"] + args.alpha * terms["kd"] + args.beta * terms["sdd"] + args.gamma * terms["rkd"]
        values = {k: v.item() for k, v in terms.items()}  # note: a CPU-GPU sync, once per step
        for k, v in values.items():
            if not math.isfinite(v):
                raise NonFiniteLoss(f"non-finite {k} loss ({v}) at {desc} epoch {epoch} step {step}; "
                                    "the last good checkpoint is kept. Lower --lr or the term's weight.")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if args.clip_grad > 0:
            scaler.unscale_(optimizer)  # clip the true gradient, not the loss-scaled one
            nn.utils.clip_grad_norm_(net.parameters(), args.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
        n += 1
        bar.set_postfix({k: f"{v:.3f}" for k, v in values.items()})
    return {k: v / max(n, 1) for k, v in sums.items()}


# ------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate(model, loader, spec, args, max_steps=None, desc="eval"):
    """clip_acc@1: the centered view alone; video_acc@1: softmax averaged over all V views."""
    model.eval()
    total = {"clip_correct": 0, "video_correct": 0, "videos": 0, "failed_videos": 0}
    c = (args.eval_clips // 2) * args.eval_crops + args.eval_crops // 2  # centered clip, center crop
    for step, batch in enumerate(tqdm(loader, desc=desc, leave=False, disable=not is_main())):
        if max_steps is not None and step >= max_steps:
            break
        total["failed_videos"] += batch.num_failed  # undecodable videos are excluded and counted
        if batch.clips is None:
            continue
        views, y = batch.clips.to(args.device), batch.labels.to(args.device)
        views = views.unsqueeze(1) if views.dim() == 5 else views  # one view: (B, 3, L, H, W) -> (B, 1, ...)
        B, V = views.shape[:2]  # (B, V, 3, L, H, W), V = clips x crops, clip-major
        with torch.autocast("cuda", enabled=args.amp and args.device.startswith("cuda")):
            z = model(models.adapt_input(views.flatten(0, 1), spec))
        z = z.float().view(B, V, -1)  # (B*V, C) -> (B, V, C)
        total["clip_correct"] += (z[:, c].argmax(-1) == y).sum().item()
        total["video_correct"] += (z.softmax(-1).mean(1).argmax(-1) == y).sum().item()
        total["videos"] += B
    total = plumbing.sum_over_ranks(total)  # each rank saw a disjoint share of the videos
    n = max(total["videos"], 1)
    return {"clip_acc@1": 100 * total["clip_correct"] / n, "video_acc@1": 100 * total["video_correct"] / n,
            "videos": int(total["videos"]), "failed_videos": int(total["failed_videos"])}


# ----------------------------------------------------------------------------------- teachers
def get_teacher(role, name, pretrained, args, splits, num_classes, root):
    """A fine-tuned, frozen teacher ("vit" or "cnn") and its metrics: from --<role>-teacher-ckpt,
    the cache, or trained now (and cached, keyed by everything that changes it); `pretrained`: the
    file of its Kinetics-400 weights, or False."""
    spec, ckpt = models.input_spec(name), getattr(args, f"{role}_teacher_ckpt")
    seed_everything(args.seed, role, "init")  # the teacher's initial weights follow --seed
    model = models.build_model(name, num_classes, pretrained=pretrained)
    if ckpt:  # fine-tuned elsewhere: evaluate once so the report has its accuracy
        model = frozen(load_state(model, ckpt, f"--{role}-teacher-ckpt").to(args.device))
        r = evaluate(model, splits.eval_loader, spec, args, plumbing.dry_run_steps(args), desc=f"{role}_teacher eval")
        return Teacher(FeatureTap(model), spec), {"last": r, "best": r, "history": []}
    cache = plumbing.TeacherCache(args, role, name, root, len(splits.train_set))
    if cache.load(model):
        return Teacher(FeatureTap(frozen(model.to(args.device))), spec), cache.metrics
    recipe = plumbing.teacher_recipe(args, role)  # this teacher's epochs, lr and what it fine-tunes
    if recipe["finetune"] == "top":  # the rest keeps its pretrained weights
        log(f"[{role}_teacher] fine-tuning the top: {models.freeze_below_top(model, name):,} of "
            f"{models.count_params(model):,} parameters")
    model.to(args.device)
    # data_key: the name the stage had when the cached teachers were trained; a new one would draw
    # other batches and train another teacher under the same cache key
    metrics = plumbing.fit(f"{role}_teacher", model, splits, args, spec, recipe["epochs"], recipe["lr"],
                           train_one_epoch=train_one_epoch, evaluate=evaluate, data_key=f"teacher_{role}")
    if is_main():
        cache.save(model, metrics)
    return Teacher(FeatureTap(frozen(model)), spec), metrics


# -------------------------------------------------------------------------------------------- main
def load_data(args, preset):
    """-> (Splits, class names, data root): the run's training videos and evaluation loader."""
    train_set, eval_set, root = plumbing.build_datasets(args, preset["clip"])
    classes = (train_set.dataset if isinstance(train_set, Subset) else train_set).classes
    log(f"data: {len(train_set)} training videos, {len(eval_set)} evaluation videos, {len(classes)} classes")
    return plumbing.Splits(train_set, plumbing.eval_loader(eval_set, args)), classes, root


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    options.resolve_defaults(args)  # refuses contradictions; fills the init-dependent defaults
    if args.check_weights:  # every model with its starting weights, no data, no output files
        return {"weights": plumbing.check_weights(args)}
    args.device = plumbing.setup_distributed(args.device)
    preset, t_start, seconds = models.PRESETS[args.preset], time.time(), {}  # seconds: per stage
    if is_main():  # one line on the terminal; the full resolved configuration goes to the file
        log(f"train.py: preset {args.preset}, dataset {args.dataset}, seed {args.seed}; "
            f"configuration in {reports.write_config(args)}")
    if args.check:  # list unreadable / too-short videos of both splits, then stop
        return {"problems": plumbing.check_videos(*plumbing.build_datasets(args, preset["clip"])[:2])}
    # Kinetics-400 files found (or downloaded) before the data: a missing one stops the run in
    # seconds, not after the data is indexed, and the message lists all of them
    weights = plumbing.pretrained_weights(args)  # {role: file or False}
    with plumbing.timed(seconds, "data"):  # includes writing the synthetic set on first use
        splits, classes, root = load_data(args, preset)

    # stage 1: teachers, fine-tuned (or loaded) and then frozen
    teachers, metrics = {}, {}
    for role in plumbing.TEACHERS:
        with plumbing.timed(seconds, f"{role}_teacher"):
            teachers[role], metrics[f"{role}_teacher"] = get_teacher(
                role, preset[f"{role}_teacher"], weights[f"{role}_teacher"], args, splits, len(classes), root)

    # stage 2: the CE-only student (baseline)
    spec_s = models.input_spec(preset["student"])
    if not args.skip_student_ce:
        seed_everything(args.seed, "student", "init")
        student_ce = models.build_model(preset["student"], len(classes), pretrained=weights["student"])
        with plumbing.timed(seconds, "student_ce"):
            metrics["student_ce"] = plumbing.fit(
                "student_ce", student_ce.to(args.device), splits, args, spec_s, args.epochs, args.lr,
                train_one_epoch=train_one_epoch, evaluate=evaluate, data_key="student")

    # stage 3: distillation -- the same student initialization, plus the training-only SDD head
    if args.skip_student:  # a CE-only run (ablate.py's CE rows): student_ce is its student.pt
        student = student_ce
    else:
        seed_everything(args.seed, "student", "init")
        student = models.build_model(preset["student"], len(classes), pretrained=weights["student"])
        net = Distiller.for_teachers(student, spec_s, teachers, args.sdd_target, args.beta > 0).to(args.device)
        with plumbing.timed(seconds, "student"):
            # data_key as the CE stage's: both see the same batches (a paired comparison)
            metrics["student"] = plumbing.fit(
                "student", net, splits, args, spec_s, args.epochs, args.lr, train_one_epoch=train_one_epoch,
                evaluate=evaluate, data_key="student", teachers=teachers, eval_model=student, keep_epochs=True)

    # report: accuracy and cost of every model; the student's reduction vs the ViT teacher
    trained = {**{f"{role}_teacher": (t.tap.model, t.spec) for role, t in teachers.items()},  # vit, cnn
               "student": (student, spec_s)}  # student_ce: the same architecture
    out = reports.results(args, preset, trained, metrics, time.time() - t_start, seconds)
    if is_main():
        reports.print_report(out)
        reports.write_reports(args.out, out, student, classes)  # + student.json for predict.py
    return out


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted: the last finished epoch is checkpointed; rerun with --resume to continue")
        raise SystemExit(130)
    # bad input, missing or unfit weights, a diverged run: the message is the actionable part,
    # not the traceback
    except (NonFiniteLoss, FileNotFoundError, WeightsError) as e:
        raise SystemExit(f"error: {e}")
