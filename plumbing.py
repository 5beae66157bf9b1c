"""Run plumbing: processes, seeds, settings, loaders, checkpoints and resume, the teacher cache.

Reading guide
-------------
Nothing of the paper lives here; this is what makes a run of train.py reproducible and
resumable. train.py reads as the method and calls these helpers; what a run reports is reports.py.

  processes      `setup_distributed`, `is_main`, `log`, `sum_over_ranks`: torchrun sets RANK /
                 WORLD_SIZE; rank 0 writes every file and prints every line.
  settings       `timed` (a stage's wall time for the report); `current_names` reads a config
                 saved under a setting's earlier name, so that runs made before a rename still
                 read and resume (the flags and their defaults: options.py).
  seeds          `seed_of(*keys)` turns e.g. (seed, "student", epoch) into a stable 32-bit seed,
                 `seed_everything(*keys)` seeds Python, NumPy and torch with it. Every epoch
                 starts from such a state, so shuffling, augmentation and dropout of an epoch
                 depend only on those keys: that is what makes --resume exact.
  loaders        `train_loader` (shuffled by a generator seeded per epoch; DataLoader workers
                 draw their crops from their own seeded streams) and `eval_loader` (each rank
                 takes a disjoint share of the videos, no padding).
  one stage      `fit`: the epochs of one model (a teacher's fine-tuning, student_ce, student)
                 with the lr schedule, evaluation, logging, checkpoints and resume; the step
                 itself (`train_one_epoch`) and `evaluate` are train.py's, passed in, and so is
                 what differs between stages: which random streams the epochs draw from
                 (`data_key`: the two student stages share theirs) and whether every epoch's
                 model is kept (`keep_epochs`, `student_epoch_path`: for diagnostics.py).
  checkpoints    `atomic_save` (write, then rename: never a half-written file), `run_key(args)`
                 (the settings a checkpoint must share with the run that resumes it),
                 `save_checkpoint` / `restore_checkpoint` (everything an epoch boundary needs).
  data           `build_datasets` (the synthetic set written on first use, the test split or a
                 seeded held-out part of the training split) and the optimizer with its
                 warm-up + cosine schedule (`adamw_warmup_cosine`).
  weights        `pretrained_weights` (the Kinetics-400 files the preset and the inits need, found
                 in --pretrained-dir or torch.hub's cache or downloaded, before any data is read),
                 `check_weights` (train.py --check-weights).
  teacher cache  `TeacherCache` / `teacher_cache_key` hash everything that changes a trained
                 teacher, so a cached teacher is reused only by a run that would have trained the
                 same one.
"""
import contextlib
import hashlib
import json
import math
import os
import random
import time
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Subset

import checkpoints
import data
import models
import synthetic

# Bump when the teacher training code changes: it invalidates every cached teacher.
TEACHER_RECIPE_VERSION = 5
TEACHERS = ("vit", "cnn")  # the two teachers' roles: the keys of every per-teacher table
# Settings that never change a run's numbers: a checkpoint written with others still fits
# (--pretrained-dir only says where the same published files lie).
NOT_IN_RUN_KEY = ("resume", "workers", "device", "preload", "pretrained_dir", "check_weights")
# Settings renamed since runs were first recorded, old name -> today's: the config.json and
# checkpoints of earlier runs hold the old names (which always meant the CNN teacher's).
RENAMED_SETTINGS = {"teacher_epochs": "cnn_teacher_epochs", "teacher_lr": "cnn_teacher_lr",
                    "teacher_finetune": "cnn_teacher_finetune"}
# Checkpoint files of runs started before the teacher stages took the names results.json gives
# them (--resume still reads them): today's file name -> the earlier one.
OLD_CHECKPOINT_NAMES = {f"ckpt_{role}_teacher.pt": f"ckpt_teacher_{role}.pt" for role in TEACHERS}


# ----------------------------------------------------------------------------------- processes
def setup_distributed(device):
    """Join the process group torchrun describes (if any) -> the device this process uses."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(device)
    return device


def world_size():
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main():
    return not dist.is_initialized() or dist.get_rank() == 0


def sum_over_ranks(counts):
    """{name: number} -> the same names, each summed over all processes (as is without DDP)."""
    if not dist.is_initialized():
        return counts
    t = torch.tensor(list(counts.values()), dtype=torch.float64)
    dist.all_reduce(t)
    return dict(zip(counts, t.tolist()))


def log(*a):
    if is_main():
        print(*a, flush=True)


# ---------------------------------------------------------------------------------------- seeds
def seed_of(*keys):
    """A 32-bit seed from a tuple of keys, e.g. (seed, "student", epoch): stable across runs."""
    return int(hashlib.sha256(repr(keys).encode()).hexdigest()[:8], 16)


def seed_everything(*keys):
    s = seed_of(*keys)
    random.seed(s), np.random.seed(s), torch.manual_seed(s)


# ------------------------------------------------------------------------------------ settings
def current_names(config):
    """A run's saved settings (config.json, a checkpoint's) under today's names."""
    return {RENAMED_SETTINGS.get(k, k): v for k, v in config.items()}


@contextlib.contextmanager
def timed(seconds, stage):
    """with timed(seconds, "student"): ... -> seconds["student"] = its wall time (the report's)."""
    t0 = time.time()
    yield
    seconds[stage] = time.time() - t0


# ------------------------------------------------------------------------------- data, loaders
def synthetic_root(args):
    # Non-default sets get their own folder: regenerating a shared one would pull it from under
    # another run that is reading it.
    if args.synthetic_videos_per_class is None and args.data_seed == 0:
        return "data/synthetic"
    return f"data/synthetic_{args.synthetic_videos_per_class or 'default'}vpc_seed{args.data_seed}"


def build_datasets(args, clip):
    """Training set, evaluation set (test split or a held-out part of train) and the data root."""
    root = args.data_root
    if args.dataset == "synthetic":
        root = root or synthetic_root(args)
        size = {} if args.synthetic_videos_per_class is None else {
            "videos_per_class": args.synthetic_videos_per_class}
        if is_main():
            synthetic.ensure_synthetic_hmdb51(root, seed=args.data_seed, **size)
        if dist.is_initialized():
            dist.barrier()  # other ranks wait until rank 0 has written the set
    elif root is None and args.video_dir is None:
        raise SystemExit("--dataset hmdb51 needs --data-root (see README, 'Getting HMDB51')")
    common = dict(split=args.split, video_dir=args.video_dir, split_dir=args.split_dir,
                  skip_missing=args.skip_missing, preload=args.preload, **clip)
    use_val = args.val_fraction > 0  # evaluate on held-out training videos, never on the test split
    train_set = data.HMDB51(root, subset="train", mode="train", crop_scale=(args.min_crop_scale, 1.0),
                            **common)
    eval_set = data.HMDB51(root, subset="train" if use_val else "test", mode="eval",
                           num_clips=args.eval_clips, num_crops=args.eval_crops, **common)
    if use_val:  # a seeded split of the training videos, the same for every run seed
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(args.data_seed))
        n_val = int(round(args.val_fraction * len(train_set)))
        eval_set, train_set = Subset(eval_set, order[:n_val].tolist()), Subset(train_set, order[n_val:].tolist())
    return train_set, eval_set, root


class Splits(NamedTuple):
    """The data a stage trains and evaluates on."""
    train_set: Dataset  # the training videos: `fit` builds each epoch's loader from it (`train_loader`)
    eval_loader: DataLoader  # the evaluation videos' loader (`eval_loader`): the same every epoch


def check_videos(*datasets):
    """train.py --check: print and return the unreadable or too-short videos of the datasets."""
    problems = [p for ds in datasets for p in data.check(ds)]
    for path, problem in problems:
        log(f"{path}: {problem}")
    log(f"--check: {len(problems)} problem videos in {sum(len(ds) for ds in datasets)}")
    return problems


# ------------------------------------------------------------------------------ starting weights
ROLES = ("vit_teacher", "cnn_teacher", "student")  # the keys of a preset's three models
INIT_FLAGS = {"vit_teacher": "--teacher-init", "cnn_teacher": "--teacher-init", "student": "--student-init"}
# --check-weights builds each model with the classifier the run will give it, before the data
# says how many classes there are: HMDB51's 51, or the synthetic set's 9 (train.py keeps
# make_synthetic_hmdb51's default). The classifier is new either way; only its size depends on it.
CHECK_CLASSES = {"hmdb51": 51, "synthetic": 9}


def starting_points(args):
    """What each model of the run starts from -> {role: "pretrained" | "scratch" | a path}:
    Kinetics-400 weights (tiny preset: the zoo), random weights, or a --vit/--cnn-teacher-ckpt
    (a teacher fine-tuned elsewhere, which needs no Kinetics-400 weights)."""
    return {"vit_teacher": args.vit_teacher_ckpt or args.teacher_init,
            "cnn_teacher": args.cnn_teacher_ckpt or args.teacher_init, "student": args.student_init}


def pretrained_weights(args):
    """{role: the local file with its model's Kinetics-400 weights, or False (random weights or a
    --*-teacher-ckpt)}. Found in --pretrained-dir or torch.hub's cache, or downloaded
    (checkpoints.find_pretrained); train.py calls this before it reads any data, so a missing file
    stops a run in seconds, with one message listing every file the preset and inits need."""
    if args.pretrained_dir and not os.path.isdir(args.pretrained_dir):
        raise checkpoints.WeightsError(f"--pretrained-dir {args.pretrained_dir}: no such folder; give the "
                                       f"folder that holds the published weight files")
    preset, inits = models.PRESETS[args.preset], starting_points(args)
    needed = [preset[role] for role in ROLES if inits[role] == "pretrained"]
    try:
        found = checkpoints.find_pretrained(needed, args.pretrained_dir, dir_flag="--pretrained-dir")
    except checkpoints.WeightsError as e:
        # The files the other init would read too, so that one trip to a machine with internet
        # access brings everything (the paper starts the student from Kinetics-400 as well).
        also = [(role, *checkpoints.published_file(preset[role])) for role in ROLES
                if inits[role] == "scratch" and preset[role] not in checkpoints.ZOO_MODELS]
        also = [f"\n{INIT_FLAGS[role]} pretrained would also need {file} from {url} (the "
                f"{role.replace('_', ' ')})" for role, file, url in also]
        raise checkpoints.WeightsError(str(e) + "".join(also)) from None
    return {role: found[preset[role]] if inits[role] == "pretrained" else False for role in ROLES}


def check_weights(args):
    """train.py --check-weights: build every model of the run with the weights it would start
    from, print where they came from and the parameter count, touch no data
    -> {role: {"model", "weights", "params"}}. Raises a WeightsError naming every file that is
    missing, or (after trying all) every file that does not load."""
    weights, preset = pretrained_weights(args), models.PRESETS[args.preset]
    classes, rows, failed = CHECK_CLASSES[args.dataset], {}, []
    for role, init in starting_points(args).items():
        name = preset[role]
        try:
            if init == "scratch":  # random weights: the meta device gives the size without the init's cost
                with torch.device("meta"):
                    model = models.build_model(name, classes)
                source = f"random weights ({INIT_FLAGS[role]} scratch)"
            elif init == "pretrained":
                model = models.build_model(name, classes, pretrained=weights[role])
                source = f"{'zoo' if name in checkpoints.ZOO_MODELS else 'Kinetics-400'} weights {weights[role]}"
            else:  # a fine-tuned teacher, loaded strictly as the run will
                flag = f"--{role.split('_')[0]}-teacher-ckpt"
                model = checkpoints.load_state(models.build_model(name, classes), init, flag)
                source = f"fine-tuned teacher {init} ({flag})"
        except (checkpoints.WeightsError, SystemExit) as e:  # try the others too, report all
            failed.append(f"{role} {name}: {e}")
            continue
        rows[role] = {"model": name, "weights": source, "params": models.count_params(model)}
        log(f"--check-weights: {role:<12} {name:<12} {rows[role]['params']:>12,} parameters, {source}")
    if failed:
        raise checkpoints.WeightsError(f"{len(failed)} model(s) of the run do not load:\n" + "\n".join(failed))
    log(f"--check-weights: every model of preset {args.preset} loads ({classes} classes); the run can start")
    return rows


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
        eval_set = Subset(eval_set, list(range(dist.get_rank(), len(eval_set), world_size())))
    # Evaluation is deterministic, so its workers may persist across epochs (and keep their
    # per-video packet indexes); training loaders are rebuilt per epoch to seed them exactly.
    return DataLoader(eval_set, batch_size=max(1, args.batch_size // 2), num_workers=args.workers,
                      collate_fn=data.collate_skip_failed, persistent_workers=args.workers > 0,
                      pin_memory=args.device.startswith("cuda"))


# ---------------------------------------------------------------------------------- checkpoints
def atomic_save(obj, path):
    """torch.save through checkpoints.atomic_write: an interruption never leaves half a file."""
    checkpoints.atomic_write(path, lambda tmp: torch.save(obj, tmp))


def run_key(args, names=None):
    """A hash of every setting that changes a run's numbers (not --resume, --workers, --device);
    `names`: {today's name: the name to hash it under} (default: today's names)."""
    settings = {(names or {}).get(k, k): v for k, v in vars(args).items() if k not in NOT_IN_RUN_KEY}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_keys(args):
    """The keys a checkpoint this run may continue carries: today's, and the one the same
    settings had under their names before RENAMED_SETTINGS (a run started then)."""
    return {run_key(args), run_key(args, {new: old for old, new in RENAMED_SETTINGS.items()})}


def adamw_warmup_cosine(net, lr, args, steps_per_epoch, epochs):
    """AdamW on the trainable parameters; lr linear warm-up over --warmup-epochs, then cosine.

    factor(t) = (t + 1) / warm for t < warm, then 0.5 * (1 + cos(pi * (t - warm) / (total - warm)));
    t counts optimizer steps, so the schedule is the same for any epoch length.
    """
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=lr,
                                  weight_decay=args.wd)
    warm = max(1, int(args.warmup_epochs * steps_per_epoch))
    total = max(1, epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: (t + 1) / warm if t < warm else
                                                  0.5 * (1 + math.cos(math.pi * (t - warm) / max(1, total - warm))))
    return optimizer, scheduler


def save_checkpoint(path, args, net, optimizer, scheduler, scaler, state):
    """Everything an epoch boundary needs to continue exactly, with the settings that made it."""
    atomic_save({"net": net.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                 "state": state, "config": {"key": run_key(args), **vars(args)}}, path)


def existing_checkpoint(path):
    """`path`, or the file a run started before the teacher stages were renamed wrote in its
    place (OLD_CHECKPOINT_NAMES), or None when neither exists."""
    folder, name = os.path.split(path)
    old = os.path.join(folder, OLD_CHECKPOINT_NAMES[name]) if name in OLD_CHECKPOINT_NAMES else None
    return next((p for p in (path, old) if p and os.path.exists(p)), None)


def restore_checkpoint(path, args, net, optimizer, scheduler, scaler):
    """Load `path` into the given objects -> the saved training state, or None if no file."""
    found = existing_checkpoint(path)
    if found is None:
        return None
    ck = torch.load(found, map_location="cpu", weights_only=False)  # ours: written by this file
    if ck["config"]["key"] not in run_keys(args):
        saved = current_names(ck["config"])
        differ = [f"--{k.replace('_', '-')}: {saved.get(k, '(none)')!r} there, {v!r} now"
                  for k, v in sorted(vars(args).items()) if k not in NOT_IN_RUN_KEY and saved.get(k) != v]
        detail = f" ({'; '.join(differ[:3])})" if differ else ""
        raise SystemExit(f"{found} was written by a run with other settings{detail}; use another --out "
                         "or drop --resume")
    if found != path:
        log(f"--resume: reading {found}, the earlier name of {os.path.basename(path)}")
    net.load_state_dict(ck["net"]), optimizer.load_state_dict(ck["optimizer"])
    scheduler.load_state_dict(ck["scheduler"]), scaler.load_state_dict(ck["scaler"])
    return ck["state"]


# ------------------------------------------------------------------------------------ one stage
DRY_RUN_STEPS = 2  # --dry-run: steps per epoch and evaluation batches


def dry_run_steps(args):
    """Steps per epoch and evaluation batches: all of them, or a few under --dry-run."""
    return DRY_RUN_STEPS if args.dry_run else None


def student_epoch_path(out, epoch):
    """<out>/student_epochs/epoch_XX.pt: the plain student after `epoch` (1-based), which `fit`
    keeps for every epoch of the distillation stage (the deployable model, no SDD head)."""
    return os.path.join(out, "student_epochs", f"epoch_{epoch:02d}.pt")


def fit(stage, net, splits, args, spec, epochs, lr, *, train_one_epoch, evaluate, data_key,
        teachers=None, eval_model=None, keep_epochs=False):
    """Train `net` (its input: `spec`) for `epochs` epochs of train.py's `train_one_epoch`,
    evaluating `eval_model` (default: `net`) with its `evaluate`, with a checkpoint after every
    epoch in <out>/ckpt_<stage>.pt that --resume continues from.
    -> {"last": metrics, "best": metrics, "history": [rows]}.

    data_key names the random streams of each epoch (the order of the batches, augmentation,
    dropout): stages given the same key see the same data. keep_epochs: also keep the evaluated
    model of every epoch (`student_epoch_path`)."""
    max_steps = dry_run_steps(args)
    steps = max_steps or len(splits.train_set) // world_size() // args.batch_size
    optimizer, scheduler = adamw_warmup_cosine(net, lr, args, steps_per_epoch=steps, epochs=epochs)
    scaler = torch.amp.GradScaler("cuda", enabled=args.amp and args.device.startswith("cuda"))
    ddp = nn.parallel.DistributedDataParallel(net) if dist.is_initialized() else net
    eval_model, ckpt_path = eval_model or net, os.path.join(args.out, f"ckpt_{stage}.pt")
    state = {"epoch": 0, "history": [], "best": None}
    if args.resume:
        state = restore_checkpoint(ckpt_path, args, net, optimizer, scheduler, scaler) or state
        if state["epoch"]:
            log(f"[{stage}] resumed after epoch {state['epoch']}")
    for epoch in range(state["epoch"], epochs):
        t0 = time.time()
        loader = train_loader(splits.train_set, args, (args.seed, data_key, epoch))
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        seed_everything(args.seed, data_key, epoch, "rng")  # augmentation/dropout of this epoch
        train_stats = train_one_epoch(ddp, loader, optimizer, scheduler, scaler, args, spec, teachers,
                                      epoch, max_steps, desc=f"{stage} {epoch + 1}/{epochs}")
        # Evaluating every view of the evaluation split after every epoch would cost each stage
        # one more pass over the data per epoch; by default only the last epoch is evaluated
        # (the reported numbers), --eval-every 1 gives the per-epoch accuracy curves.
        metrics = {}
        if epoch + 1 == epochs or (args.eval_every and (epoch + 1) % args.eval_every == 0):
            metrics = evaluate(eval_model, splits.eval_loader, spec, args, max_steps, desc=f"{stage} eval")
        row = {"stage": stage, "epoch": epoch + 1, **train_stats, **metrics,
               "lr": scheduler.get_last_lr()[0], "seconds": round(time.time() - t0, 2)}
        state["history"].append(row)
        if metrics and (state["best"] is None or metrics["clip_acc@1"] > state["best"]["clip_acc@1"]):
            state["best"] = {**metrics, "epoch": epoch + 1}
        state["epoch"] = epoch + 1
        log(f"[{stage}] epoch {epoch + 1}/{epochs} " + " ".join(
            f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float)))
        if is_main():
            save_checkpoint(ckpt_path, args, net, optimizer, scheduler, scaler, state)
        if is_main() and keep_epochs:
            path = student_epoch_path(args.out, epoch + 1)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic_save(eval_model.state_dict(), path)
    return {"last": state["history"][-1] if state["history"] else {}, "best": state["best"],
            "history": state["history"]}


# -------------------------------------------------------------------------------- teacher cache
def teacher_recipe(args, role):
    """A teacher's own schedule: epochs, peak lr, what it fine-tunes (the other teacher's settings
    are not in its cache key: a new ViT schedule does not retrain the CNN)."""
    return {part: getattr(args, f"{role}_teacher_{part}") for part in ("epochs", "lr", "finetune")}


def teacher_cache_key(args, role, name, root, n_train):
    """Everything that changes a trained teacher; a different value -> a different cache entry."""
    recipe = teacher_recipe(args, role)
    fields = dict(v=TEACHER_RECIPE_VERSION, role=role, model=name, dataset=args.dataset,
                  root=os.path.realpath(root), split=args.split, n_train=n_train,
                  synthetic=(args.synthetic_videos_per_class, args.data_seed), preset=args.preset,
                  init=args.teacher_init, **recipe,
                  top=models.TOP_LAYERS.get(name) if recipe["finetune"] == "top" else None,
                  wd=args.wd, bs=args.batch_size, warmup=args.warmup_epochs, seed=args.seed,
                  clip_grad=args.clip_grad, amp=args.amp, val_fraction=args.val_fraction,
                  min_crop_scale=args.min_crop_scale,
                  dry_run=args.dry_run, world=world_size(), made_by=synthetic_settings(root))
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16], fields


def synthetic_settings(root):
    """The generator settings of a synthetic set (None for real data): a set redrawn with other
    settings in the same folder must not reuse teachers trained on the old one."""
    info = os.path.join(root, synthetic.SYNTHETIC_INFO)
    if not os.path.isfile(info):
        return None
    with open(info) as f:
        return json.load(f)["settings"]


class TeacherCache:
    """A trained teacher under --cache-dir, named by `teacher_cache_key`: reused only by a run
    that would have trained the very same teacher."""

    def __init__(self, args, role, name, root, n_train):
        key, self.fields = teacher_cache_key(args, role, name, root, n_train)
        self.path, self.role = os.path.join(args.cache_dir, f"{role}_{name}_{key}.pt"), role
        self.metrics = None

    def load(self, model):
        """Load the cached weights into `model` -> True, or False when there are none."""
        if not os.path.exists(self.path):
            return False
        log(f"[{self.role}_teacher] reusing {self.path}")
        ck = torch.load(self.path, map_location="cpu", weights_only=False)  # ours, keyed: it fits
        model.load_state_dict(ck["model"])
        self.metrics = ck["metrics"]
        return True

    def save(self, model, metrics):
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        atomic_save({"model": model.state_dict(), "metrics": metrics, "key": self.fields}, self.path)
