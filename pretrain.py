"""pretrain.py -- the tiny preset's model zoo: pretrain its three models on a synthetic "Kinetics".

Reading guide
-------------
Paper (arXiv 2511.09469, its experimental setup): the teachers and the student start from
Kinetics-400 weights and are fine-tuned on HMDB51, so the teachers know far more than HMDB51's
~70 training videos per class. The tiny preset has no hub to download from; this script makes
its stand-in: it writes the synthetic corpus (`synthetic.make_synthetic_kinetics`: 36 classes
of the same primitives as the tiny HMDB51, at other speeds and shapes), trains each tiny model
on it with train.py's own training step and evaluation (`plumbing.fit`), and writes

    weights/<model>.pt    the weights (float16: half the size; loaded into float32)
    weights/<model>.json  the recipe (everything that changes the weights), the held-out
                          clip_acc@1 on the corpus's test split, the command, the wall time and
                          the torch version

`python train.py` (tiny preset, `--teacher-init pretrained`) loads them through
`models.build_model(name, classes, pretrained=True)` with a new classifier for its classes.
tests/test_zoo.py recomputes each recipe from this file and fails when a shipped file is stale.

Run: `python pretrain.py` (all three models, CPU by default); `python pretrain.py --models
x3d_s_tiny`; `--quick` is the CI-sized smoke run (a tiny corpus, 2 steps).
"""
import argparse
import hashlib
import inspect
import json
import os
import shlex
import sys
import time

import torch

import data
import models
import plumbing
import synthetic
import train

PRETRAIN_RECIPE_VERSION = 1  # bump when the training code below changes the weights it makes
ZOO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
# Per model: epochs and peak learning rate. The ViT learns from scratch more slowly (models.py,
# `_mvit_tiny`).
SCHEDULE = {"mvit_tiny": (30, 1e-3), "x3d_m_tiny": (15, 2e-3), "x3d_s_tiny": (15, 2e-3)}
CORPUS = dict(videos_per_class=60)  # synthetic.make_synthetic_kinetics settings (others: defaults)
COMMON = dict(batch_size=16, wd=0.05, warmup_epochs=2.0, clip_grad=5.0, seed=0)


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(SCHEDULE), choices=list(SCHEDULE),
                   help="which tiny models to pretrain")
    p.add_argument("--corpus-root", default="data/synthetic_kinetics",
                   help="where the corpus is written on first use")
    p.add_argument("--out", default=None,
                   help=f"where <model>.pt and .json go (default: {ZOO_DIR}; --quick: <work-dir>/quick)")
    p.add_argument("--work-dir", default="runs/pretrain", help="checkpoints for --resume")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    p.add_argument("--device", default="cpu", help="cpu (the shipped recipe) or cuda")
    p.add_argument("--resume", action="store_true", help="continue an interrupted pretraining")
    p.add_argument("--quick", action="store_true",
                   help="CI smoke run: 4 videos per class, 1 epoch of 2 steps; never into weights/")
    return p


def recipe(name, quick=False):
    """Everything that changes the weights `name` gets here; equal recipes -> equal weights."""
    epochs, lr = SCHEDULE[name]
    corpus = {"generator": synthetic.GENERATOR_VERSION, **synthetic_defaults(), **CORPUS,
              **({"videos_per_class": 4} if quick else {})}
    # The architecture: parameter names and shapes (a changed model makes the file stale).
    with torch.device("meta"):
        model = models.build_model(name, len(synthetic.corpus_classes()))
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    arch = hashlib.sha256(json.dumps(shapes, sort_keys=True).encode()).hexdigest()[:16]
    r = {"version": PRETRAIN_RECIPE_VERSION, "model": name, "architecture": arch,
         "corpus": corpus, "clip": models.PRESETS["tiny"]["clip"], "epochs": 1 if quick else epochs,
         "lr": lr, **COMMON, "steps_per_epoch": plumbing.DRY_RUN_STEPS if quick else "all"}
    return json.loads(json.dumps(r))  # as the .json file holds it (tuples become lists)


def synthetic_defaults():
    sig = inspect.signature(synthetic.make_synthetic_kinetics)
    return {k: p.default for k, p in sig.parameters.items() if k != "root"}


def pretrain(name, args, argv):
    r = recipe(name, args.quick)
    root = synthetic.ensure_synthetic_kinetics(args.corpus_root + ("_quick" if args.quick else ""),
                                               **{k: r["corpus"][k] for k in CORPUS})
    clip = r["clip"]
    train_set = data.HMDB51(root, subset="train", mode="train", **clip)
    eval_set = data.HMDB51(root, subset="test", mode="eval", **clip)
    # train.py's own arguments, so that fit() runs exactly the step train.py runs.
    targs = train.get_args_parser().parse_args([
        "--batch-size", str(r["batch_size"]), "--wd", str(r["wd"]), "--seed", str(r["seed"]),
        "--warmup-epochs", str(r["warmup_epochs"]), "--clip-grad", str(r["clip_grad"]),
        "--workers", str(args.workers), "--device", args.device, "--eval-clips", "1",
        "--out", args.work_dir] + (["--resume"] if args.resume else []) + (["--dry-run"] if args.quick else []))
    splits = plumbing.Splits(train_set, plumbing.eval_loader(eval_set, targs))
    plumbing.seed_everything(r["seed"], "pretrain", name, "init")
    model = models.build_model(name, len(train_set.classes)).to(args.device)
    os.makedirs(args.work_dir, exist_ok=True)
    t0 = time.time()
    # the stage is named by the model (its checkpoint: <work-dir>/ckpt_<model>.pt)
    metrics = plumbing.fit(name, model, splits, targs, models.input_spec(name), r["epochs"], r["lr"],
                           train_one_epoch=train.train_one_epoch, evaluate=train.evaluate,
                           data_key=f"pretrain_{name}")
    seconds = time.time() - t0
    os.makedirs(args.out, exist_ok=True)
    half = {k: v.half() if v.is_floating_point() else v for k, v in model.cpu().state_dict().items()}
    plumbing.atomic_save(half, os.path.join(args.out, f"{name}.pt"))
    card = {"model": name, "recipe": r, "classes": train_set.classes,
            "held_out": {k: metrics["last"][k] for k in ("clip_acc@1", "video_acc@1", "videos")},
            "command": "python pretrain.py " + shlex.join(argv), "seconds": round(seconds, 1),
            "device": args.device, "torch": torch.__version__}
    with open(os.path.join(args.out, f"{name}.json"), "w") as f:
        json.dump(card, f, indent=1)
    print(f"[pretrain] {name}: held-out clip_acc@1 {card['held_out']['clip_acc@1']:.1f} on "
          f"{card['held_out']['videos']} corpus videos, {seconds:.0f} s -> {args.out}/{name}.pt")
    return card


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = get_args_parser().parse_args(argv)
    args.out = args.out or (os.path.join(args.work_dir, "quick") if args.quick else ZOO_DIR)
    if args.quick and os.path.abspath(args.out) == ZOO_DIR:
        raise SystemExit("--quick makes smoke-test weights; give --out another folder than weights/")
    return {name: pretrain(name, args, argv) for name in args.models}


if __name__ == "__main__":
    main()
