"""options.py -- train.py's command line: every flag, its default, and the defaults other flags imply.

Reading guide
-------------
`get_args_parser()` lists the flags in groups (data, models, optimization, distillation, a
controlled teacher fault, evaluation, run); `python train.py --help` prints them with their
defaults. Some defaults depend on other flags and are filled in by `resolve_defaults(args)` after
parsing, which also refuses contradictory flags:

  TEACHER_EPOCHS, TEACHER_LR   each teacher's schedule, by --teacher-init
  STUDENT_LR                   the student's peak rate, by --student-init
  workers, --preload           by the device and the dataset
  --dry-run                    every stage clamped to 2 epochs

The resolved values are what config.json and the cache keys record. A flag renamed since runs
were first recorded keeps its old name as a hidden alias (`RenamedFlag`), which says once that
it was renamed. Where a flag comes from a paper, its help names the source.
"""
import argparse
import os
import sys

import torch

import models
from checkpoints import published_file
from faults import FAULTS
from plumbing import ROLES, TEACHERS

# Each teacher's epochs and peak learning rate when --vit/--cnn-teacher-epochs and -lr are not
# given, by --teacher-init; chosen on validation (RESULTS.md, "How the benchmark's fixed settings
# were chosen"): fewer epochs left the teachers less accurate. From scratch the ViT needs the
# most epochs, having the least inductive bias to learn from a small training split.
TEACHER_EPOCHS = {"vit": {"pretrained": 30, "scratch": 30}, "cnn": {"pretrained": 20, "scratch": 12}}
TEACHER_LR = {"vit": {"pretrained": 2e-3, "scratch": 1e-3}, "cnn": {"pretrained": 4e-3, "scratch": 2e-3}}
# Student peak learning rate (both student stages) by --student-init, tuned on validation for
# each init and for the CE-only student (its best is the distilled student's best too): a
# student from random weights needs a larger step than one fine-tuned from the zoo.
STUDENT_LR = {"pretrained": 2e-3, "scratch": 8e-3}
# On a CPU with few cores the model already keeps every core busy: loader processes would only
# take cores from torch's threads and slow the training step down (RESULTS.md, "Timings behind
# the code's comments"). With more cores, or on a GPU, two workers decode while the model computes.
WORKERS_HELP = "(default: 0 on a CPU with at most 4 cores, else 2)"


def defaults_help(table):
    """Help text: the defaults of a {"pretrained": value, "scratch": value} table."""
    return f"(default: {table['pretrained']:g} to fine-tune, {table['scratch']:g} from scratch)"


class RenamedFlag(argparse.Action):
    """A flag's earlier name: sets what the flag `new` sets, says once that it is renamed, and
    stays out of --help."""

    told = set()  # the old names already reported in this process (ablate.py parses often)

    def __init__(self, option_strings, dest, new, **kwargs):
        kwargs.update(default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        super().__init__(option_strings, new.lstrip("-").replace("-", "_"), **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string not in RenamedFlag.told:
            RenamedFlag.told.add(option_string)
            print(f"note: {option_string} is now {self.new} (the old name still works)", file=sys.stderr,
                  flush=True)
        setattr(namespace, self.dest, values)


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help with "(default: ...)", except where the default is resolved later (None)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def default_workers(device):
    """DataLoader workers when none are asked for: see WORKERS_HELP."""
    return 0 if device == "cpu" and (os.cpu_count() or 1) <= 4 else 2


def resolve_defaults(args):
    """Refuse an unknown preset and contradictory flags; fill the teacher epochs, learning rates
    and fine-tuned parts that --teacher-init (and the preset) imply, the student learning rate
    --student-init implies, the loader workers the machine implies and --preload, and clamp every
    stage to 2 epochs under --dry-run. The resolved values are what config.json and the cache
    keys record."""
    if args.preset not in models.PRESETS:
        raise SystemExit(f"unknown --preset {args.preset!r}; valid: {', '.join(sorted(models.PRESETS))}")
    if args.skip_student and args.skip_student_ce:
        raise SystemExit("--skip-student with --skip-student-ce leaves no student to train; drop one")
    if args.mixup > 0 and (args.weighting == "camkd" or args.kd_gate == "label"):
        raise SystemExit("--mixup mixes two labels per clip; --weighting camkd and --kd-gate label read one: "
                         "drop --mixup or choose another weighting / --kd-gate none")
    for role in TEACHERS:
        for key, table in ((f"{role}_teacher_epochs", TEACHER_EPOCHS), (f"{role}_teacher_lr", TEACHER_LR)):
            if getattr(args, key) is None:
                setattr(args, key, table[role][args.teacher_init])
        key = f"{role}_teacher_finetune"
        if getattr(args, key) is None:  # the preset's choice; from random weights there is no top
            preset_choice = models.PRESETS[args.preset]["teacher_finetune"][role]
            setattr(args, key, "all" if args.teacher_init == "scratch" else preset_choice)
        if getattr(args, key) == "top" and args.teacher_init == "scratch":
            flag = "--" + key.replace("_", "-")
            raise SystemExit(f"{flag} top keeps the pretrained layers below the top; with --teacher-init "
                             f"scratch they would stay random: use {flag} all")
    if args.lr is None:
        args.lr = STUDENT_LR[args.student_init]
    if args.preload is None:  # the synthetic set decodes to ~150 MB; real HMDB51 to ~150 GB
        args.preload = args.dataset == "synthetic"
    if args.workers is None:
        args.workers = default_workers(args.device)
    if args.dry_run:  # a quick end-to-end check: at most 2 epochs of 2 steps in every stage
        for k in ("epochs", "vit_teacher_epochs", "cnn_teacher_epochs"):
            setattr(args, k, min(getattr(args, k), 2))


def get_args_parser():
    p = argparse.ArgumentParser(description="train.py -- the method end to end: teachers -> CE baseline -> "
                                            "distillation -> report.", add_help=True,
                                formatter_class=DefaultsFormatter)
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
                   help="size of the synthetic set (default: synthetic.py's default)")
    g.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic set's content")
    g.add_argument("--val-fraction", type=float, default=0.0,
                   help="if > 0, evaluate on this held-out fraction of the training videos (for tuning)")
    g.add_argument("--min-crop-scale", type=float, default=0.5,
                   help="training crops cover this much of the frame's area at least (RandomResizedCrop)")
    g.add_argument("--skip-missing", action="store_true",
                   help="skip videos listed in split files but missing on disk (reports the count)")
    g.add_argument("--check", action="store_true", help="list unreadable or too-short videos, then exit")
    g.add_argument("--workers", type=int, default=None, help="DataLoader workers per process " + WORKERS_HELP)
    g.add_argument("--preload", action=argparse.BooleanOptionalAction, default=None,
                   help="decode every video once and keep it in memory (default: only for the synthetic set)")
    g = p.add_argument_group("models")
    g.add_argument("--preset", default="tiny", help=f"one of {sorted(models.PRESETS)}")
    g.add_argument("--teacher-init", default="pretrained", choices=["pretrained", "scratch"],
                   help="teachers start from Kinetics-400 weights (tiny: the zoo in weights/) or random")
    g.add_argument("--student-init", default="scratch", choices=["pretrained", "scratch"], help="as above")
    files = {preset: ", ".join(published_file(models.PRESETS[preset][role])[0] for role in ROLES)
             for preset in ("paper", "torchvision")}  # the published names, from checkpoints.py's URLs
    g.add_argument("--pretrained-dir", default=None, metavar="FOLDER",
                   help=f"offline Kinetics-400 weights: a folder holding the published files under their "
                        f"published names (paper: {files['paper']}; torchvision: {files['torchvision']}), "
                        f"looked in before torch.hub's cache and a download (default: none)")
    g.add_argument("--check-weights", action="store_true",
                   help="load every model of the run with the weights it would start from, print "
                        "where they came from, then exit without reading data (before a GPU job)")
    for flag, role, who in (("--vit-teacher-finetune", "vit", "ViT"), ("--cnn-teacher-finetune", "cnn", "CNN")):
        g.add_argument(flag, default=None, choices=["all", "top"], help=f"a pretrained {who} teacher fine-tunes all "
                       f"layers or only its last stage + classifier (models.TOP_LAYERS; default: the preset's, "
                       f"tiny: {models.PRESETS['tiny']['teacher_finetune'][role]})")
    g.add_argument("--vit-teacher-ckpt", default=None, help="fine-tuned ViT teacher state dict")
    g.add_argument("--cnn-teacher-ckpt", default=None, help="fine-tuned CNN teacher state dict")
    g.add_argument("--cache-dir", default="runs/teacher_cache", help="where trained teachers are kept")
    g = p.add_argument_group("optimization (AdamW, linear warm-up then cosine decay per step)")
    g.add_argument("--epochs", type=int, default=15, help="student epochs (both student stages)")
    g.add_argument("--vit-teacher-epochs", type=int, default=None,
                   help="ViT teacher epochs " + defaults_help(TEACHER_EPOCHS["vit"]))
    g.add_argument("--cnn-teacher-epochs", type=int, default=None,
                   help="CNN teacher epochs " + defaults_help(TEACHER_EPOCHS["cnn"]))
    g.add_argument("--vit-teacher-lr", type=float, default=None,
                   help="ViT teacher peak learning rate " + defaults_help(TEACHER_LR["vit"]))
    g.add_argument("--cnn-teacher-lr", type=float, default=None,
                   help="CNN teacher peak learning rate " + defaults_help(TEACHER_LR["cnn"]))
    # Earlier names of the CNN teacher's flags (they read as if they set both): a note, no --help
    g.add_argument("--teacher-epochs", action=RenamedFlag, new="--cnn-teacher-epochs", type=int)
    g.add_argument("--teacher-lr", action=RenamedFlag, new="--cnn-teacher-lr", type=float)
    g.add_argument("--teacher-finetune", action=RenamedFlag, new="--cnn-teacher-finetune",
                   choices=["all", "top"])
    g.add_argument("--batch-size", type=int, default=16, help="clips per step and process")
    g.add_argument("--lr", type=float, default=None, help="student peak lr " + defaults_help(STUDENT_LR))
    g.add_argument("--wd", type=float, default=0.05, help="AdamW weight decay")
    g.add_argument("--clip-grad", type=float, default=5.0, help="max gradient norm (0: off), for RKD spikes")
    g.add_argument("--warmup-epochs", type=float, default=2.0, help="linear warm-up length")
    g.add_argument("--skip-student-ce", action="store_true", help="skip the CE-only baseline")
    g.add_argument("--skip-student", action="store_true",
                   help="train the CE-only baseline and stop: no distillation (the teachers are still "
                        "fine-tuned or loaded, for the report); ablate.py's CE rows")
    g = p.add_argument_group("distillation (Paper: loss = CE + alpha*KD + beta*SDD + gamma*RKD)")
    g.add_argument("--alpha", type=float, default=1.0, help="alpha: weight of the DATW KD term")
    g.add_argument("--beta", type=float, default=1.0, help="beta: weight of the SDD term")
    g.add_argument("--gamma", type=float, default=0.01,
                   help="gamma: weight of the RKD term w_d * L_D + w_a * L_A (tuned on validation)")
    g.add_argument("--T", type=float, default=4.0, help="T: softmax temperature of the KD loss (scaled by T^2)")
    g.add_argument("--tau-w", type=float, default=0.1, help="tau_w: DATW's softmax temperature over teachers")
    g.add_argument("--T-c", type=float, default=1.0,
                   help="T_c: temperature of the confidence c_k (T would flatten every c_k to ~0)")
    g.add_argument("--weighting", default="datw", choices=["datw", "uniform", "entropy", "camkd", "vit", "cnn"],
                   help="how the two teachers' logits are mixed (DATW or an ablation baseline; camkd: by each "
                        "teacher's cross-entropy against the label, CA-MKD, Zhang et al. 2022)")
    g.add_argument("--kd-loss", default="kl", choices=["kl", "dist"],
                   help="KD loss: Hinton's KL (paper) or DIST's correlations (Huang et al. 2022)")
    g.add_argument("--kd-gate", default="none", choices=["none", "label"],
                   help="label: KD only on clips whose fused target's top class is the label (ours, "
                        "RESULTS.md: where the target is wrong the distilled student follows it)")
    g.add_argument("--ce-weight", type=float, default=1.0, help="weight of the CE term (paper: 1)")
    g.add_argument("--mixup", type=float, default=0.0, metavar="A",
                   help="distillation on mixed clips, lam ~ Beta(A, A) (0: off): function matching, "
                        "Beyer et al. 2022")
    g.add_argument("--sdd-target", default="residual", choices=["residual", "vit"],
                   help="SDB predicts phi_vit(f_vit) - phi_cnn(f_cnn) (paper) or phi_vit(f_vit)")
    g.add_argument("--rkd-distance-weight", type=float, default=25.0,
                   help="w_d: weight of the RKD distance loss inside the RKD term (Park et al.)")
    g.add_argument("--rkd-angle-weight", type=float, default=50.0,
                   help="w_a: weight of the RKD angle loss (Park et al.); 0 turns the O(B^3) term off")
    g = p.add_argument_group("a controlled teacher fault (faults.py; an experiment, not the paper)")
    g.add_argument("--fault", default="none", choices=list(FAULTS),
                   help="make one teacher uncertain or confidently wrong on the first --fault-classes classes")
    g.add_argument("--fault-teacher", default="vit", choices=list(TEACHERS), help="the faulty teacher")
    g.add_argument("--fault-classes", type=int, default=3, help="how many classes the fault covers")
    g = p.add_argument_group("evaluation")
    g.add_argument("--eval-clips", type=int, default=3, help="temporal clips per video (video_acc@1)")
    g.add_argument("--eval-crops", type=int, default=1, help="spatial crops per clip (video_acc@1)")
    g.add_argument("--eval-every", type=int, default=0, help="also evaluate every N epochs (0: last only; 1: curves)")
    g = p.add_argument_group("run")
    g.add_argument("--out", default="runs/default", help="output folder")
    g.add_argument("--seed", type=int, default=0, help="random seed (recorded in results.json)")
    g.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    g.add_argument("--amp", action="store_true", help="mixed precision on CUDA (losses in float32)")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    g.add_argument("--dry-run", action="store_true", help="<= 2 epochs of 2 steps per stage, 2 eval batches")
    return p
