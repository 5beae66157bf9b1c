"""train.py -- the whole method end to end: teachers -> CE baseline -> distillation -> report.

Reading guide
-------------
Read top to bottom: arguments -> data -> models -> one training loop -> evaluation -> main.

    stage 1  teachers    each teacher (ViT: MViTv2, CNN: X3D-M) is fine-tuned on the training
                         split with cross-entropy, or loaded from --vit/--cnn-teacher-ckpt; trained
                         teachers are cached under --cache-dir, keyed by everything that changes them.
    stage 2  student_ce  the student trained with cross-entropy only: the baseline that shows
                         what distillation adds (--skip-student-ce skips it).
    stage 3  student     the paper's objective (Paper: DATW + SDD + RKD on top of CE):
                             loss = CE + alpha * KD_DATW + beta * SDD + gamma * RKD
                         The SDD head (phi projections + SDB) is trained with the student and
                         dropped from the saved student.
    report               clip_acc@1 / video_acc@1 of all four models (best and last epoch),
                         params, GMACs, and <out>/results.json, student.pt, log.csv, config.json.

Teachers are handled in one place (`frozen`): eval() mode, requires_grad False, outputs under
torch.no_grad(), so neither their weights nor their BatchNorm statistics can move.

Note: every epoch starts from RNG state seed(seed, stage, epoch), so shuffling, augmentation and
dropout of an epoch depend only on those numbers (and on --workers: each DataLoader worker draws
the random crops of its share of the clips from its own seeded stream). That is what makes
`--resume` (from the checkpoint written atomically after every epoch) end with the same numbers as
an uninterrupted run; both student stages see the same batches, so student vs student_ce is paired.

Multi-GPU / multi-node: `torchrun --nproc_per_node=N train.py ...` (DistributedDataParallel; the
student and its training-only SDD head are one wrapped module; rank 0 writes every file).
"""
import argparse
import csv
import hashlib
import json
import math
import os
import random
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Subset
from tqdm import tqdm

import data
import models
from datw import fuse_logits, kd_loss, teacher_weights
from rkd import rkd_loss
from sdd import SDDHead, sdd_loss

TEACHER_RECIPE_VERSION = 3  # bump when the teacher training code changes: invalidates the cache


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], add_help=True,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="synthetic", choices=["synthetic", "hmdb51"],
                   help="built-in synthetic 'tiny HMDB51' (generated on first use) or real HMDB51")
    g.add_argument("--data-root", default=None,
                   help="dataset root in the HMDB51 layout (default for synthetic: data/synthetic)")
    g.add_argument("--video-dir", default=None, help="videos folder if not <data-root>")
    g.add_argument("--split-dir", default=None,
                   help="split-file folder if not <data-root>/testTrainMulti_7030_splits")
    g.add_argument("--split", type=int, default=1, choices=[1, 2, 3], help="official split")
    g.add_argument("--synthetic-videos-per-class", type=int, default=None,
                   help="size of the synthetic set (default: data.py's default)")
    g.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic set's content")
    g.add_argument("--val-fraction", type=float, default=0.0,
                   help="if > 0, hold out this fraction of the training videos and evaluate on it "
                        "instead of the test split (for tuning without touching the test split)")
    g.add_argument("--skip-missing", action="store_true",
                   help="skip videos listed in split files but missing on disk (reports the count)")
    g.add_argument("--check", action="store_true",
                   help="scan the dataset for unreadable or too-short videos, print them, exit")
    g.add_argument("--workers", type=int, default=2, help="DataLoader workers per process")
    g = p.add_argument_group("models")
    g.add_argument("--preset", default="tiny", help=f"one of {sorted(models.PRESETS)}")
    g.add_argument("--pretrained", action="store_true",
                   help="start every model from its Kinetics-400 weights (needs network or cache)")
    g.add_argument("--vit-teacher-ckpt", default=None, help="fine-tuned ViT teacher state dict")
    g.add_argument("--cnn-teacher-ckpt", default=None, help="fine-tuned CNN teacher state dict")
    g.add_argument("--cache-dir", default="runs/teacher_cache", help="where trained teachers are kept")
    g = p.add_argument_group("optimization (AdamW, linear warm-up then cosine decay per step)")
    g.add_argument("--epochs", type=int, default=10, help="student epochs (both student stages)")
    g.add_argument("--teacher-epochs", type=int, default=12, help="CNN teacher fine-tuning epochs")
    g.add_argument("--vit-teacher-epochs", type=int, default=30,
                   help="ViT teacher epochs: a ViT trained from scratch needs more than a CNN")
    g.add_argument("--vit-teacher-lr", type=float, default=1e-3,
                   help="ViT teacher peak learning rate (from scratch, 2e-3 stalled at chance)")
    g.add_argument("--batch-size", type=int, default=16, help="clips per step and process")
    g.add_argument("--lr", type=float, default=2e-3, help="student peak learning rate")
    g.add_argument("--teacher-lr", type=float, default=2e-3, help="teacher peak learning rate")
    g.add_argument("--wd", type=float, default=0.05, help="AdamW weight decay")
    g.add_argument("--clip-grad", type=float, default=5.0,
                   help="max gradient norm (0: off); guards against rare RKD angle spikes")
    g.add_argument("--warmup-epochs", type=float, default=2.0, help="linear warm-up length")
    g.add_argument("--skip-student-ce", action="store_true", help="skip the CE-only baseline")
    g = p.add_argument_group("distillation (Paper: loss = CE + alpha*KD + beta*SDD + gamma*RKD)")
    g.add_argument("--alpha", type=float, default=1.0, help="alpha: weight of the DATW KD term")
    g.add_argument("--beta", type=float, default=1.0, help="beta: weight of the SDD term")
    g.add_argument("--gamma", type=float, default=0.01,
                   help="gamma: weight of the RKD term (chosen on --val-fraction 0.2 from 0.1, "
                        "0.03, 0.01: the larger two lowered accuracy, RESULTS.md)")
    g.add_argument("--T", type=float, default=4.0, help="T: softmax temperature of the KD loss (scaled by T^2)")
    g.add_argument("--tau-w", type=float, default=0.1,
                   help="tau_w: temperature of DATW's softmax over teachers (datw.py)")
    g.add_argument("--datw-T", type=float, default=1.0,
                   help="temperature of the teacher confidence c_k in DATW/entropy weighting; kept "
                        "apart from T because a high T flattens every confidence to ~0")
    g.add_argument("--weighting", default="datw", choices=["datw", "uniform", "entropy", "vit", "cnn"],
                   help="how the two teachers' logits are mixed (DATW or an ablation baseline)")
    g.add_argument("--sdd-target", default="residual", choices=["residual", "vit"],
                   help="SDB predicts phi_vit(f_vit) - phi_cnn(f_cnn) (paper) or phi_vit(f_vit)")
    g.add_argument("--rkd-distance-weight", type=float, default=25.0, help="RKD psi_D weight (Park)")
    g.add_argument("--rkd-angle-weight", type=float, default=50.0,
                   help="RKD psi_A weight (Park); 0 turns the O(B^3) angle term off")
    g = p.add_argument_group("evaluation")
    g.add_argument("--eval-clips", type=int, default=3, help="temporal clips per video (video_acc@1)")
    g.add_argument("--eval-crops", type=int, default=1, help="spatial crops per clip (video_acc@1)")
    g = p.add_argument_group("run")
    g.add_argument("--out", default="runs/default", help="output folder")
    g.add_argument("--seed", type=int, default=0, help="random seed (recorded in results.json)")
    g.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    g.add_argument("--amp", action="store_true", help="mixed precision on CUDA (losses in float32)")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    g.add_argument("--dry-run", action="store_true",
                   help="at most 2 epochs of 2 steps per stage, 2 eval batches: a quick check")
    return p


# ----------------------------------------------------------------------------- small utilities
def is_main():
    return not dist.is_initialized() or dist.get_rank() == 0


def log(*a):
    if is_main():
        print(*a, flush=True)


def seed_of(*keys):
    """A 32-bit seed from a tuple of keys, e.g. (seed, "student", epoch): stable across runs."""
    return int(hashlib.sha256(repr(keys).encode()).hexdigest()[:8], 16)


def seed_everything(*keys):
    s = seed_of(*keys)
    random.seed(s), np.random.seed(s), torch.manual_seed(s)


def atomic_save(obj, path):
    """Write to a temporary file, then rename: an interruption never leaves a half-written file."""
    tmp = f"{path}.tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def frozen(model):
    """Teachers: eval() (BatchNorm uses, never updates, its running statistics), no gradients."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class NonFiniteLoss(RuntimeError):
    pass


# ----------------------------------------------------------------------------------- data
def build_datasets(args, clip):
    """Training set, evaluation set (test split or held-out part of train) and class names."""
    root = args.data_root
    if args.dataset == "synthetic":
        # Non-default sets get their own folder: regenerating a shared one would pull it from
        # under another run that is reading it.
        custom = args.synthetic_videos_per_class is not None or args.data_seed != 0
        root = root or ("data/synthetic" if not custom else
                        f"data/synthetic_{args.synthetic_videos_per_class or 'default'}vpc_seed{args.data_seed}")
        kw = {} if args.synthetic_videos_per_class is None else {
            "videos_per_class": args.synthetic_videos_per_class}
        if is_main():
            data.ensure_synthetic_hmdb51(root, seed=args.data_seed, **kw)
        if dist.is_initialized():
            dist.barrier()  # other ranks wait until rank 0 has written the set
    elif root is None and args.video_dir is None:
        raise SystemExit("--dataset hmdb51 needs --data-root (see README, 'Getting HMDB51')")
    common = dict(split=args.split, video_dir=args.video_dir, split_dir=args.split_dir,
                  skip_missing=args.skip_missing, **clip)
    use_val = args.val_fraction > 0  # evaluate on held-out training videos, never on the test split
    train_set = data.HMDB51(root, train=True, **common)
    eval_set = data.HMDB51(root, train=use_val, eval_mode=True, num_clips=args.eval_clips,
                           num_crops=args.eval_crops, **common)
    if use_val:  # a seeded split of the training videos, the same for every run seed
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(args.data_seed))
        n_val = int(round(args.val_fraction * len(train_set)))
        eval_set, train_set = Subset(eval_set, order[:n_val].tolist()), Subset(train_set, order[n_val:].tolist())
    return train_set, eval_set, root


def train_loader(train_set, args, key):
    """Shuffled per epoch from a generator seeded by `key`: the epoch's order is reproducible."""
    g = torch.Generator().manual_seed(seed_of(*key))
    sampler = (DistributedSampler(train_set, seed=g.initial_seed() % 2**31, drop_last=True)
               if dist.is_initialized() else RandomSampler(train_set, generator=g))
    return DataLoader(train_set, batch_size=args.batch_size, sampler=sampler, drop_last=True,
                      num_workers=args.workers, generator=g, pin_memory=args.device.startswith("cuda"))


def eval_loader(eval_set, args):
    # Each rank takes every world_size-th video: no padding, so no video is counted twice.
    if dist.is_initialized():
        eval_set = Subset(eval_set, list(range(dist.get_rank(), len(eval_set), dist.get_world_size())))
    # Evaluation is deterministic, so its workers may persist across epochs (and keep their
    # per-video packet indexes); training loaders are rebuilt per epoch to seed them exactly.
    return DataLoader(eval_set, batch_size=max(1, args.batch_size // 2), num_workers=args.workers,
                      collate_fn=data.collate_skip_failed, persistent_workers=args.workers > 0,
                      pin_memory=args.device.startswith("cuda"))


# --------------------------------------------------------------------------------- models
class Distiller(nn.Module):
    """Student (with its feature tap) + training-only SDD head, as ONE module so that DDP sees
    every trainable parameter used in every step. The deployable student is `self.tap.model`."""

    def __init__(self, student, sdd_head=None):
        super().__init__()
        self.tap, self.sdd = models.FeatureTap(student), sdd_head

    def forward(self, x, f_vit=None, f_cnn=None):
        z_s, feats_s = self.tap(x)
        pred, target = self.sdd(feats_s["map"], f_vit, f_cnn) if self.sdd is not None else (None, None)
        return z_s, feats_s, pred, target


def load_state(model, path, what):
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise SystemExit(f"{what} checkpoint {path} does not fit this model "
                         f"(other classes or another architecture?): {str(e)[:600]}") from None
    return model


# --------------------------------------------------------------------------- one epoch of training
def distillation_terms(z_s, f_s, pred, target, z_vit, f_vit, z_cnn, y, args):
    """The loss terms of one batch (each a float32 scalar) and the mean DATW weights (logged)."""
    # DATW: per-sample weights over the teachers [ViT, CNN], then z_target = sum_k w_k z_k
    w = teacher_weights(args.weighting, [z_vit, z_cnn], z_s, **args.weight_kw)
    zero = z_s.new_zeros((), dtype=torch.float32)  # a switched-off term costs nothing
    return {"ce": F.cross_entropy(z_s.float(), y, reduction="mean"),
            "kd": kd_loss(z_s, fuse_logits([z_vit, z_cnn], w), T=args.T),
            "sdd": sdd_loss(pred, target) if pred is not None else zero,
            "rkd": rkd_loss(f_s["embed"], f_vit["embed"], w_d=args.rkd_distance_weight,
                            w_a=args.rkd_angle_weight) if args.gamma > 0 else zero,
            "w_vit": w[:, 0].mean(), "w_cnn": w[:, 1].mean()}


def train_one_epoch(net, loader, optimizer, scheduler, scaler, args, spec_s, teachers=None,
                    epoch=0, max_steps=None, desc="train"):
    """One epoch. Without teachers: cross-entropy only (teacher fine-tuning, student_ce).
    With teachers = {"vit": (tap, spec), "cnn": (tap, spec)}: the paper's distillation loss."""
    net.train()
    sums, n = {}, 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not is_main(), total=max_steps or len(loader))
    for step, (clip, y) in enumerate(bar):
        if max_steps is not None and step >= max_steps:
            break
        clip, y = clip.to(args.device, non_blocking=True), y.to(args.device, non_blocking=True)
        with torch.autocast("cuda", enabled=args.amp and args.device.startswith("cuda")):
            terms = {}
            if teachers is None:
                z = net(models.adapt_input(clip, spec_s))  # (B, C) logits of a plain model
                terms["ce"] = F.cross_entropy(z.float(), y, reduction="mean")
            else:
                with torch.no_grad():  # teachers only provide targets: no graph, no gradient
                    z_vit, f_vit = teachers["vit"][0](models.adapt_input(clip, teachers["vit"][1]))
                    z_cnn, f_cnn = teachers["cnn"][0](models.adapt_input(clip, teachers["cnn"][1]))
                z_s, f_s, pred, target = net(models.adapt_input(clip, spec_s), f_vit["map"], f_cnn["map"])
                terms = distillation_terms(z_s, f_s, pred, target, z_vit, f_vit, z_cnn, y, args)
            loss = terms["ce"]
            if teachers is not None:  # Paper: L = CE + alpha * KD_DATW + beta * SDD + gamma * RKD
                loss = loss + args.alpha * terms["kd"] + args.beta * terms["sdd"] + args.gamma * terms["rkd"]
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
    counts = torch.zeros(4, dtype=torch.float64)  # correct clip, correct video, videos, failed
    c = (args.eval_clips // 2) * args.eval_crops + args.eval_crops // 2  # centered clip, center crop
    for step, batch in enumerate(tqdm(loader, desc=desc, leave=False, disable=not is_main())):
        if max_steps is not None and step >= max_steps:
            break
        counts[3] += batch.num_failed  # undecodable videos are excluded and counted
        if batch.clips is None:
            continue
        views, y = batch.clips.to(args.device), batch.labels.to(args.device)
        if views.dim() == 5:  # one view per video: (B, 3, T, H, W) -> (B, 1, 3, T, H, W)
            views = views.unsqueeze(1)
        B, V = views.shape[:2]  # (B, V, 3, T, H, W), V = clips x crops, clip-major
        with torch.autocast("cuda", enabled=args.amp and args.device.startswith("cuda")):
            z = model(models.adapt_input(views.flatten(0, 1), spec))
        z = z.float().view(B, V, -1)  # (B*V, C) -> (B, V, C)
        counts[0] += (z[:, c].argmax(-1) == y).sum().item()
        counts[1] += (z.softmax(-1).mean(1).argmax(-1) == y).sum().item()
        counts[2] += B
    if dist.is_initialized():
        dist.all_reduce(counts)  # sum over ranks, each saw a disjoint share of the videos
    n = max(counts[2].item(), 1)
    return {"clip_acc@1": 100 * counts[0].item() / n, "video_acc@1": 100 * counts[1].item() / n,
            "videos": int(counts[2].item()), "failed_videos": int(counts[3].item())}


# ----------------------------------------------------------------------------------- one stage
def fit(stage, net, loaders, args, spec_s, epochs, lr, teachers=None, ckpt_path=None):
    """Train `net` for `epochs` with checkpoint-every-epoch and resume. Returns its metrics dict."""
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=args.wd)
    world = dist.get_world_size() if dist.is_initialized() else 1
    steps = args.dry_steps or len(loaders["train_set"]) // world // args.batch_size  # per epoch
    warm, total = max(1, int(args.warmup_epochs * steps)), max(1, epochs * steps)
    # factor(t) = (t+1)/warm for t < warm, then 0.5 * (1 + cos(pi * progress)); t counts steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: (t + 1) / warm if t < warm else
                                                  0.5 * (1 + math.cos(math.pi * (t - warm) / max(1, total - warm))))
    scaler = torch.amp.GradScaler("cuda", enabled=args.amp and args.device.startswith("cuda"))
    ddp = (nn.parallel.DistributedDataParallel(net) if dist.is_initialized() else net)
    state = {"epoch": 0, "history": [], "best": None}
    if args.resume and ckpt_path and os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ck["config"]["key"] != args.run_key:
            raise SystemExit(f"{ckpt_path} was written by a run with other settings; "
                             "use another --out or drop --resume")
        net.load_state_dict(ck["net"]), optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"]), scaler.load_state_dict(ck["scaler"])
        state = ck["state"]
        log(f"[{stage}] resumed after epoch {state['epoch']}")
    for epoch in range(state["epoch"], epochs):
        t0 = time.time()
        # Both student stages draw the same batches and augmentations (a paired comparison).
        data_key = "student" if stage.startswith("student") else stage
        loader = train_loader(loaders["train_set"], args, (args.seed, data_key, epoch))
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        seed_everything(args.seed, data_key, epoch, "rng")  # augmentation/dropout of this epoch
        train_stats = train_one_epoch(ddp, loader, optimizer, scheduler, scaler, args, spec_s, teachers,
                                      epoch, args.dry_steps, desc=f"{stage} {epoch + 1}/{epochs}")
        model = net.tap.model if isinstance(net, Distiller) else net
        metrics = evaluate(model, loaders["eval"], spec_s, args, args.dry_steps, desc=f"{stage} eval")
        row = {"stage": stage, "epoch": epoch + 1, **train_stats, **metrics,
               "lr": scheduler.get_last_lr()[0], "seconds": round(time.time() - t0, 2)}
        state["history"].append(row)
        if state["best"] is None or metrics["clip_acc@1"] > state["best"]["clip_acc@1"]:
            state["best"] = {**metrics, "epoch": epoch + 1}
        state["epoch"] = epoch + 1
        log(f"[{stage}] epoch {epoch + 1}/{epochs} " + " ".join(
            f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float)))
        if is_main() and ckpt_path:
            atomic_save({"net": net.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                         "state": state, "config": {"key": args.run_key, **vars(args)}}, ckpt_path)
    return {"last": state["history"][-1] if state["history"] else {}, "best": state["best"],
            "history": state["history"]}


def teacher_cache_key(args, role, name, root, n_train):
    """Everything that changes a trained teacher; a different value -> a different cache entry."""
    fields = dict(v=TEACHER_RECIPE_VERSION, role=role, model=name, dataset=args.dataset,
                  root=os.path.abspath(root), split=args.split, n_train=n_train,
                  synthetic=(args.synthetic_videos_per_class, args.data_seed), preset=args.preset,
                  pretrained=args.pretrained, epochs=args.teacher_epochs, vit_epochs=args.vit_teacher_epochs,
                  lr=args.teacher_lr, vit_lr=args.vit_teacher_lr,
                  wd=args.wd, bs=args.batch_size, warmup=args.warmup_epochs, seed=args.seed,
                  clip_grad=args.clip_grad, amp=args.amp, val_fraction=args.val_fraction,
                  dry_run=args.dry_run,
                  world=dist.get_world_size() if dist.is_initialized() else 1)
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16], fields


def get_teacher(role, name, ckpt, args, loaders, num_classes, root):
    """A fine-tuned, frozen teacher: from --<role>-teacher-ckpt, the cache, or trained now."""
    spec = models.input_spec(name)
    seed_everything(args.seed, role, "init")  # the teacher's initial weights follow --seed
    model = models.build_model(name, num_classes, pretrained=args.pretrained and not ckpt)
    if ckpt:  # fine-tuned elsewhere: evaluate once so the report has its accuracy
        model = frozen(load_state(model, ckpt, f"--{role}-teacher-ckpt").to(args.device))
        r = evaluate(model, loaders["eval"], spec, args, args.dry_steps, desc=f"eval {role}")
        return model, spec, {"last": r, "best": r, "history": []}
    key, fields = teacher_cache_key(args, role, name, root, len(loaders["train_set"]))
    path = os.path.join(args.cache_dir, f"{role}_{name}_{key}.pt")
    if os.path.exists(path):
        log(f"[teacher {role}] reusing {path}")
        ck = torch.load(path, map_location="cpu", weights_only=False)  # ours, keyed: it fits
        model.load_state_dict(ck["model"])
        return frozen(model.to(args.device)), spec, ck["metrics"]
    model.to(args.device)
    epochs = args.vit_teacher_epochs if role == "vit" and args.vit_teacher_epochs else args.teacher_epochs
    lr = args.vit_teacher_lr if role == "vit" else args.teacher_lr
    metrics = fit(f"teacher_{role}", model, loaders, args, spec, epochs, lr,
                  ckpt_path=os.path.join(args.out, f"ckpt_teacher_{role}.pt"))
    if is_main():
        os.makedirs(args.cache_dir, exist_ok=True)
        atomic_save({"model": model.state_dict(), "metrics": metrics, "key": fields}, path)
    return frozen(model), spec, metrics


# -------------------------------------------------------------------------------------------- main
def setup_distributed(args):
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not dist.is_initialized():
        backend = "nccl" if args.device.startswith("cuda") else "gloo"
        dist.init_process_group(backend)
        if args.device.startswith("cuda"):
            args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(args.device)


def model_row(name, model, spec, metrics):
    last, best = metrics["last"], metrics["best"] or {}
    return {"name": name, "params": models.count_params(model),
            "gmacs": models.count_gmacs(model, (3, spec.frames, spec.size, spec.size)),
            "input": [spec.frames, spec.size, spec.size],
            "clip_acc@1": last.get("clip_acc@1"), "video_acc@1": last.get("video_acc@1"),
            "best_clip_acc@1": best.get("clip_acc@1"), "best_video_acc@1": best.get("video_acc@1"),
            "best_epoch": best.get("epoch")}


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if args.preset not in models.PRESETS:
        raise SystemExit(f"unknown --preset {args.preset!r}; valid: {', '.join(sorted(models.PRESETS))}")
    args.dry_steps = 2 if args.dry_run else None
    if args.dry_run:  # a quick end-to-end check: at most 2 epochs of 2 steps in every stage
        for k in ("epochs", "teacher_epochs", "vit_teacher_epochs"):
            setattr(args, k, min(getattr(args, k), 2))
    args.weight_kw = {"T_c": args.datw_T, "tau_w": args.tau_w}
    setup_distributed(args)
    args.run_key = hashlib.sha256(json.dumps({k: v for k, v in vars(args).items() if k not in
                                              ("resume", "workers", "device")}, sort_keys=True,
                                             default=str).encode()).hexdigest()[:16]
    preset = models.PRESETS[args.preset]
    t_start = time.time()
    if is_main():
        os.makedirs(args.out, exist_ok=True)
        log(json.dumps(vars(args), indent=1, default=str))
        with open(os.path.join(args.out, "config.json"), "w") as f:
            json.dump(vars(args), f, indent=1, default=str)
    train_set, eval_set, root = build_datasets(args, preset["clip"])
    if args.check:  # list unreadable / too-short videos of both splits, then stop
        problems = data.check(train_set) + data.check(eval_set)
        for path, problem in problems:
            log(f"{path}: {problem}")
        log(f"--check: {len(problems)} problem videos in {len(train_set) + len(eval_set)}")
        return {"problems": problems}
    classes = (train_set.dataset if isinstance(train_set, Subset) else train_set).classes
    loaders = {"train_set": train_set, "eval": eval_loader(eval_set, args)}
    log(f"data: {len(train_set)} training videos, {len(eval_set)} evaluation videos, {len(classes)} classes")

    # stage 1: teachers, fine-tuned (or loaded) and then frozen
    vit, spec_vit, m_vit = get_teacher("vit", preset["vit_teacher"], args.vit_teacher_ckpt, args,
                                       loaders, len(classes), root)
    cnn, spec_cnn, m_cnn = get_teacher("cnn", preset["cnn_teacher"], args.cnn_teacher_ckpt, args,
                                       loaders, len(classes), root)
    teachers = {"vit": (models.FeatureTap(vit), spec_vit), "cnn": (models.FeatureTap(cnn), spec_cnn)}

    # stage 2: the CE-only student (baseline) with the student's own seed for its initial weights
    spec_s, results = models.input_spec(preset["student"]), {}
    if not args.skip_student_ce:
        seed_everything(args.seed, "student", "init")
        student_ce = models.build_model(preset["student"], len(classes), pretrained=args.pretrained)
        results["student_ce"] = fit("student_ce", student_ce.to(args.device), loaders, args, spec_s,
                                    args.epochs, args.lr, ckpt_path=os.path.join(args.out, "ckpt_student_ce.pt"))

    # stage 3: distillation -- the same student initialization, plus the training-only SDD head
    seed_everything(args.seed, "student", "init")
    student = models.build_model(preset["student"], len(classes), pretrained=args.pretrained)
    c_map = [models.feature_dims(m, spec)["map"] for m, spec in
             ((student, spec_s), (vit, spec_vit), (cnn, spec_cnn))]  # channels of each "map"
    head = SDDHead(*c_map, target=args.sdd_target) if args.beta > 0 else None
    net = Distiller(student, head).to(args.device)
    results["student"] = fit("student", net, loaders, args, spec_s, args.epochs, args.lr,
                             teachers=teachers, ckpt_path=os.path.join(args.out, "ckpt_student.pt"))

    # report
    rows = {"vit_teacher": model_row(preset["vit_teacher"], vit, spec_vit, m_vit),
            "cnn_teacher": model_row(preset["cnn_teacher"], cnn, spec_cnn, m_cnn),
            **{k: model_row(preset["student"], student, spec_s, results[k])
               for k in ("student", "student_ce") if k in results}}
    s, v = rows["student"], rows["vit_teacher"]
    out = {"config": {k: v for k, v in vars(args).items() if k != "weight_kw"}, "models": rows,
           "reduction_vs_vit": {"params_%": 100 * (1 - s["params"] / v["params"]),
                                "gmacs_%": 100 * (1 - s["gmacs"] / v["gmacs"])},
           "history": {k: r["history"] for k, r in results.items()},
           "seconds": round(time.time() - t_start, 1)}
    if is_main():
        print_report(out)
        atomic_save(student.state_dict(), os.path.join(args.out, "student.pt"))  # plain: no SDD head
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(out, f, indent=1, default=str)
        hist = [r for k in out["history"] for r in out["history"][k]]
        keys = sorted({k for r in hist for k in r}, key=lambda k: (k not in ("stage", "epoch"), k))
        with open(os.path.join(args.out, "log.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader(), w.writerows(hist)
    return out


def print_report(out):
    print(f"\n{'model':<12} {'name':<14} {'params':>10} {'GMACs':>8} {'input':>10} "
          f"{'clip@1':>7} {'video@1':>8} {'best clip@1':>12}")
    for role, r in out["models"].items():
        inp = "x".join(map(str, r["input"]))
        print(f"{role:<12} {r['name']:<14} {r['params']:>10,} {r['gmacs']:>8.3f} {inp:>10} "
              f"{r['clip_acc@1'] or 0:>7.1f} {r['video_acc@1'] or 0:>8.1f} {r['best_clip_acc@1'] or 0:>12.1f}")
    red = out["reduction_vs_vit"]
    print(f"student vs ViT teacher: {red['params_%']:.1f}% fewer params, {red['gmacs_%']:.1f}% fewer "
          f"GMACs; total {out['seconds']:.0f} s\n")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted: the last finished epoch is checkpointed; rerun with --resume to continue")
        raise SystemExit(130)
    except (NonFiniteLoss, FileNotFoundError) as e:  # bad input or a diverged run: the message is
        raise SystemExit(f"error: {e}")                 # the actionable part, not the traceback
