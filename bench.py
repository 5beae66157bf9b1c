"""bench.py -- what the method costs: data loading, one training step, and the deployed student.

Reading guide
-------------
Four sections, each a function that returns a markdown table (`--sections` picks them):
    data        training-loader clips/s (0 and 2 DataLoader workers) and dataset construction
                time on the synthetic set (tiny preset clip), an HMDB51-like tree of 320x240
                30 fps videos (paper preset clip: 16 frames, stride 4, 224 px) and the full
                6,766-video HMDB51 layout with empty files (construction must decode nothing).
    step        the CE-only student step vs the full distillation step (train.py's own
                `train_one_epoch` on an in-memory batch), then the distillation step taken apart
                (adapters, teacher forwards, student and SDB forward/backward, the losses, the
                optimizer), each next to the lower bound its multiply-accumulates imply here.
    efficiency  the paper's deployment claim: params, GMACs per view and CPU latency per clip of
                each preset's three models, and the student's reduction vs the ViT teacher.
    deployment  the same claim for the deployed model (deploy.ClipClassifier: uint8 clip ->
                logits, what export.py writes): batch 1, one clip, median of many runs after a
                warm-up, at 1 thread and at all cores, in PyTorch eager, ONNX Runtime and
                TorchScript (export.py's own exporters), for the student and both teachers; the
                student / ViT-teacher latency ratio next to their MAC ratio. Exporting MViTv2-S
                to ONNX alone takes minutes; without onnxruntime the ONNX columns say so.

The lower bound (section "step"): a part's forward MACs are counted by torch's FlopCounterMode
on the very call that is timed (matmuls and convolutions, attention included); a backward pass
counts 2x its forward (input and weight gradients; not FlopCounterMode's own backward count,
which treats a grouped conv's weight gradient as dense, pytorch/pytorch PR #183405). Divided by
the sustained rate of a dense float32 matmul (the best case for a CPU), that is a floor no
implementation of the part can beat without doing fewer MACs; `measured / bound` says how far
it is from compute-bound (depthwise 3D convs, tiny tensors and per-op overhead push it up).
Every time is the median of `repeats` runs after `warmup` runs; the machine (CPU, cores,
threads, load average) and the command are written next to every table.

RESULTS.md is shared with ablate.py: each script owns the text between its own markers
(`<!-- bench:begin -->` ... `<!-- bench:end -->` here; inside it one sub-section per benchmark
section, so `--sections step` rewrites the step table and keeps the others); the writers are
plumbing.py's. The benchmark-only helpers live here: `make_fake_hmdb51_layout`,
`measure_loader`, `cpu_latency_ms`.

The data section writes its videos under --work-dir (default runs/bench), never data/synthetic.
Run: `python bench.py` (all sections; the paper preset's MViTv2-S takes seconds per clip on a
CPU), `python bench.py --quick` (few repeats, small sizes; deployment: ONNX for the students
only, one thread), `python bench.py --sections step`.
"""
import argparse
import copy
import os
import shlex
import statistics
import sys
import tempfile
import time
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

import data
import deploy
import export
import models
import train
from datw import fuse_logits, kd_loss, teacher_weights
from features import FeatureTap
from reports import get_section, machine, markers, md_table, replace_section, write_section
from rkd import rkd_angle_loss, rkd_distance_loss
from synthetic import ensure_synthetic_hmdb51

SECTIONS = ("data", "step", "efficiency", "deployment")


# ------------------------------------------------------------------------------------ helpers
def median_ms(fn, warmup, repeats, setup=None):
    """Median wall time of fn(setup()) in ms; setup (untimed) prepares e.g. a graph to backward."""
    times = []
    for i in range(warmup + repeats):
        arg = setup() if setup else None
        t0 = time.perf_counter()
        fn(arg) if setup else fn()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def gmacs_of(fn, arg=None):
    """Multiply-accumulates (1e9) of one call, backward included if fn runs one."""
    with FlopCounterMode(display=False) as counter:
        fn(arg) if arg is not None else fn()
    return counter.get_total_flops() / 2 / 1e9  # FlopCounterMode counts 2 FLOPs per MAC


HMDB51_CLASSES = (
    "brush_hair cartwheel catch chew clap climb climb_stairs dive draw_sword dribble drink eat fall_floor "
    "fencing flic_flac golf handstand hit hug jump kick kick_ball kiss laugh pick pour pullup punch push "
    "pushup ride_bike ride_horse run shake_hands shoot_ball shoot_bow shoot_gun sit situp smile smoke "
    "somersault stand swing_baseball sword sword_exercise talk throw turn walk wave").split()


def make_fake_hmdb51_layout(root, num_videos=6766):
    """The full HMDB51 layout (51 real class names, 3 x 51 split files, 70 train / 30 test per
    class and split, the rest unused) with *empty* video files: for timing dataset construction,
    which must not decode anything. Names contain the awkward characters real ones have."""
    split_dir = os.path.join(root, data.SPLIT_DIRNAME)
    os.makedirs(split_dir, exist_ok=True)
    per_class = [num_videos // 51 + (c < num_videos % 51) for c in range(51)]
    for c, cls in enumerate(HMDB51_CLASSES):
        os.makedirs(os.path.join(root, cls), exist_ok=True)
        names = [f"Clip_#{v}_(take {v % 3})!_&_{cls}_f_cm_np1_ri_med_{v}.avi"
                 for v in range(per_class[c])]
        for name in names:
            open(os.path.join(root, cls, name), "wb").close()
        for split in (1, 2, 3):
            ids = [1 if (v + split) % 10 < 7 else 2 for v in range(100)] + [0] * (len(names) - 100)
            with open(os.path.join(split_dir, f"{cls}_test_split{split}.txt"), "w") as f:
                f.writelines(f"{name} {i} \r\n" for name, i in zip(names, ids))
    return root


def measure_loader(dataset, num_workers=2, batch_size=16, num_batches=20):
    """Training-loader throughput -> clips per second over `num_batches` batches, after one batch
    that pays for starting the workers (epochs are repeated as needed)."""
    if len(dataset) < batch_size:  # drop_last would leave no batch at all: the loop never ends
        raise ValueError(f"measure_loader needs at least batch_size={batch_size} videos, the "
                         f"dataset has {len(dataset)}")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                        drop_last=True, persistent_workers=num_workers > 0)

    it = (batch for _epoch in iter(int, 1) for batch in loader)  # iter(int, 1): forever
    next(it)
    start, clips = time.perf_counter(), 0
    for _ in range(num_batches):
        clips += len(next(it)[1])
    return clips / (time.perf_counter() - start)


def cpu_latency_ms(module, input_shape, warmup=3, repeats=10):
    """Median CPU inference latency per clip in milliseconds (eval mode, inference_mode, on a copy
    so the caller's device and mode stay as they are); input_shape (3, L, H, W) or (B, 3, L, H, W),
    with B > 1 the batch time is divided by B. Threads: torch's setting (bench.py --threads)."""
    shape = tuple(input_shape)
    shape = (1,) + shape if len(shape) == 4 else shape
    model, x = copy.deepcopy(module).cpu().eval(), torch.randn(shape)
    with torch.inference_mode():  # the warm-up runs pay for allocation and kernel selection
        return median_ms(lambda: model(x), warmup, repeats) / shape[0]


# --------------------------------------------------------------------------------- 1. data
def bench_data(args, cfg):
    """Loader clips/s (0 and 2 workers) and construction time on three trees -> markdown."""
    rows = []

    def measure(name, root, clip, note):
        build_ms = median_ms(lambda: data.HMDB51(root, subset="train", **clip), 1, cfg["reps"])
        ds = data.HMDB51(root, subset="train", **clip)
        # measure_loader drops the last partial batch (as training does), so a set smaller than
        # one batch would yield nothing and it would wait forever: shrink the batch instead.
        batch = min(16, len(ds))
        cps = {w: statistics.median(measure_loader(ds, num_workers=w, batch_size=batch,
                                                   num_batches=cfg["batches"])
                                    for _ in range(cfg["reps"])) for w in (0, 2)}
        shape = f"{clip['num_frames']}x{clip['size']}x{clip['size']}, stride {clip['frame_stride']}"
        rows.append([name, shape, len(ds), f"{build_ms:.1f}", f"{cps[0]:.1f}", f"{cps[2]:.1f}",
                     f"{1000 / cps[0]:.1f}", f"{note}; batch {batch}"])

    # (1) The synthetic benchmark as train.py generates it by default (quick: fewer videos).
    syn = ensure_synthetic_hmdb51(os.path.join(args.work_dir, "synthetic"), seed=0, **cfg["synthetic"])
    measure("synthetic (train.py default)" if not cfg["synthetic"] else "synthetic (quick: "
            f"{cfg['synthetic']['videos_per_class']}/class)", syn, models.PRESETS["tiny"]["clip"],
            "tiny preset clip; 64x48 videos of 20 frames")
    # (2) HMDB51-like frames: 320x240 at 30 fps, long enough for the paper clip's 61-frame span
    # (16 frames x stride 4), so the loader decodes, crops and resizes like on real HMDB51.
    hm = cfg["hmdb_like"]
    paper_clip = models.PRESETS["paper"]["clip"]
    span = (paper_clip["num_frames"] - 1) * paper_clip["frame_stride"] + 1
    assert hm["num_frames"] >= span, "the HMDB-like videos must hold one paper clip"
    root = ensure_synthetic_hmdb51(os.path.join(args.work_dir, "hmdb_like"), seed=0, width=320,
                                        height=240, fps=30, **hm)
    measure("HMDB-like 320x240 30 fps", root, paper_clip,
            f"{hm['num_classes']} classes x {hm['videos_per_class']} videos x {hm['num_frames']} "
            f"frames; paper preset clip (span {span} frames)")
    table = md_table(["dataset", "clip (T x S x S)", "train videos", "construction ms",
                      "clips/s, 0 workers", "clips/s, 2 workers", "ms/clip, 0 workers", "notes"], rows)

    # (3) Construction on the real dataset's size: 6,766 empty files in the official layout.
    with tempfile.TemporaryDirectory() as tmp:
        make_fake_hmdb51_layout(tmp)
        build = {subset: median_ms(lambda: data.HMDB51(tmp, subset=subset, **paper_clip), 1,
                                   cfg["reps"]) for subset in ("train", "test")}
        n_train = len(data.HMDB51(tmp, subset="train", **paper_clip))
    table += (f"\n\nHMDB51 layout, 6,766 videos (empty files, split 1): construction "
              f"{build['train']:.0f} ms for the {n_train}-video training set, {build['test']:.0f} ms "
              f"for the test set (split parsing and one listdir per class; no decoding).")
    return (f"Loader: measure_loader, {cfg['batches']} batches after one warm-up "
            f"batch, median of {cfg['reps']} runs; construction: median of {cfg['reps']} after one "
            f"warm-up.\n\n{table}")


# ---------------------------------------------------------------------------------- 2. step
def sustained_rate(n, warmup, repeats):
    """GMAC/s of a dense float32 n x n matmul: the fastest this CPU multiplies-accumulates."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return n ** 3 / 1e9 / (median_ms(lambda: a @ b, warmup, repeats) / 1000)


def loss_terms(z_s, e_s, pred, target, z_vit, z_cnn, e_vit, y, args):
    """The total distillation loss from train.py's own `distillation_terms` (same calls, same
    arguments), on given logits and features, so the loss arithmetic can be timed on its own."""
    t = train.distillation_terms(z_s, {"embed": e_s}, pred, target, z_vit, {"embed": e_vit}, z_cnn,
                                 y, args)
    return t["ce"] + args.alpha * t["kd"] + args.beta * t["sdd"] + args.gamma * t["rkd"]


class StepInputs(NamedTuple):
    """What every timing of the step shares: train.py's own defaults (weights, temperatures,
    clip-grad, so the step is the real one), the preset's models and an in-memory batch."""
    targs: argparse.Namespace
    names: dict  # role -> model name
    specs: dict  # role -> models.InputSpec
    tap_vit: FeatureTap  # the frozen teachers, with their feature taps
    tap_cnn: FeatureTap
    teachers: dict  # {"vit": train.Teacher, "cnn": train.Teacher}
    clip: torch.Tensor  # uint8 (B, 3, L, S, S)
    y: torch.Tensor  # (B,) labels


def step_inputs(args, C):
    """The preset's frozen teachers and a random batch of `C` classes -> StepInputs."""
    preset = models.PRESETS[args.step_preset]
    clip_cfg, B = preset["clip"], args.batch_size
    torch.manual_seed(0)
    targs = train.get_args_parser().parse_args(["--device", "cpu", "--batch-size", str(B)])
    names = {k: preset[k] for k in ("vit_teacher", "cnn_teacher", "student")}
    specs = {k: models.input_spec(n) for k, n in names.items()}
    vit, cnn = (train.frozen(models.build_model(names[k], C)) for k in ("vit_teacher", "cnn_teacher"))
    tap_vit, tap_cnn = FeatureTap(vit), FeatureTap(cnn)
    teachers = {"vit": train.Teacher(tap_vit, specs["vit_teacher"]),
                "cnn": train.Teacher(tap_cnn, specs["cnn_teacher"])}
    # An in-memory batch: the data cost is the "data" section's business, not the step's.
    clip = torch.randint(0, 256, (B, 3, clip_cfg["num_frames"], clip_cfg["size"], clip_cfg["size"]),
                         dtype=torch.uint8)
    y = torch.randint(0, C, (B,))
    return StepInputs(targs, names, specs, tap_vit, tap_cnn, teachers, clip, y)


def make_student(s, C, distil):
    """A fresh student (seeded: every call builds the same weights); with distil, the Distiller
    around it (feature tap + SDD head)."""
    torch.manual_seed(0)
    student = models.build_model(s.names["student"], C)
    if not distil:
        return student
    return train.Distiller.for_teachers(student, s.specs["student"], s.teachers)


def whole_step_ms(s, net, with_teachers, cfg):
    """Per-step time of train.train_one_epoch (the real step) over an in-memory loader."""
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    loader, k = [(s.clip, s.y)] * cfg["steps_per_call"], cfg["steps_per_call"]
    run = lambda: train.train_one_epoch(net, loader, opt, sched, scaler, s.targs,
                                        s.specs["student"], s.teachers if with_teachers else None,
                                        desc="bench step")
    return median_ms(run, cfg["step_warmup"], cfg["step_repeats"]) / k


class PartTimer:
    """Times the parts of the distillation step one by one; `rows`: (name, ms, GMACs)."""

    def __init__(self, warmup, repeats):
        self.warmup, self.repeats, self.rows = warmup, repeats, []

    def __call__(self, name, fn, setup=None, gmacs=None):
        """Time fn; count its MACs on one call unless given (backward passes: see the guide)."""
        ms = median_ms(fn, self.warmup, self.repeats, setup)
        g = gmacs_of(fn, setup() if setup else None) if gmacs is None else gmacs
        self.rows.append((name, ms, g))
        return g


def time_inputs_and_teachers(part, s):
    """The three input adapters and the two teachers' forwards -> (inputs by role, the teachers'
    outputs z_vit, f_vit, z_cnn, f_cnn)."""
    x = {k: models.adapt_input(s.clip, s.specs[k]) for k in s.specs}
    part("input adapters (3 models, uint8 -> float)",
         lambda: [models.adapt_input(s.clip, spec) for spec in s.specs.values()])
    with torch.no_grad():  # teachers only provide targets (as in train.py)
        z_vit, f_vit = s.tap_vit(x["vit_teacher"])
        z_cnn, f_cnn = s.tap_cnn(x["cnn_teacher"])
    part("ViT teacher forward (no grad)", torch.no_grad()(lambda: s.tap_vit(x["vit_teacher"])))
    part("CNN teacher forward (no grad)", torch.no_grad()(lambda: s.tap_cnn(x["cnn_teacher"])))
    return x, (z_vit, f_vit, z_cnn, f_cnn)


def time_student(part, net, x_s):
    """The student's forward and backward (through its feature tap, as in training)."""
    net.train()
    g_student = part("student forward", lambda: net.tap(x_s))

    def student_graph():
        net.zero_grad(set_to_none=True)
        z_s, f_s = net.tap(x_s)
        # Gradients arrive at logits (CE, KD), map (SDB) and embedding (RKD) in the real step;
        # their values do not change the cost, so a sum stands in for the losses.
        return z_s.sum() + f_s["map"].sum() + f_s["embed"].sum()

    # Backward = 2x the forward's MACs (input and weight gradients; the stem's input gradient,
    # never computed, makes this a slight overestimate: ~3% of X3D-S's MACs).
    part("student backward", lambda loss: loss.backward(), student_graph, gmacs=2 * g_student)


def time_sdb(part, net, f_map, map_vit, map_cnn):
    """The SDD head's forward (fixed phi, residual target, the branch) and the branch's backward,
    on a detached student map (the SDB's own cost, not the student's)."""
    part("SDB forward (+ fixed phi, residual target)", lambda: net.sdd(f_map, map_vit, map_cnn))
    part("SDB backward", lambda out: out[0].sum().backward(),
         lambda: net.sdd(f_map, map_vit, map_cnn),
         gmacs=2 * gmacs_of(lambda: net.sdd.sdb(f_map)))  # phi and the target have no backward


def time_losses(part, loss_of, leaves):
    """The total loss's forward and backward, from leaves: without the networks behind it."""
    g_losses = part("losses forward: DATW + KD + CE + SDD + RKD", loss_of, leaves)
    part("losses backward", lambda loss: loss.backward(), lambda: loss_of(leaves()),
         gmacs=2 * g_losses)


def time_optimizer(part, net, clip_grad):
    """Gradient clipping and the AdamW step (the gradients must be filled)."""
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    part(f"clip-grad (max norm {clip_grad}) + AdamW step",
         lambda: (nn.utils.clip_grad_norm_(net.parameters(), clip_grad), opt.step()))


def time_loss_terms(s, leaves, target, z_vit, z_cnn, e_vit, warm, reps):
    """Each loss term on its own (forward + backward), to say where the arithmetic goes -> ms."""
    targs, y = s.targs, s.y
    terms = {
        "DATW weights + fused target + KD": lambda lv: kd_loss(lv[0], fuse_logits(
            [z_vit, z_cnn], teacher_weights(targs.weighting, [z_vit, z_cnn], lv[0], T_c=targs.T_c,
                                          tau_w=targs.tau_w, y=y)),
            T=targs.T),
        "CE": lambda lv: F.cross_entropy(lv[0].float(), y, reduction="mean"),
        "SDD (MSE)": lambda lv: train.sdd_loss(lv[2], target),  # as train.py calls it
        "RKD distance (B x B)": lambda lv: rkd_distance_loss(lv[1], e_vit),
        "RKD angle (B x B x B)": lambda lv: rkd_angle_loss(lv[1], e_vit),
    }
    return {n: median_ms(lambda lv: fn(lv).backward(), warm, reps, leaves)
            for n, fn in terms.items()}


def bench_step(args, cfg):
    """CE-only vs full distillation step, and the full step taken apart -> markdown."""
    C = 9  # the synthetic set's classes
    s = step_inputs(args, C)
    t_ce = whole_step_ms(s, make_student(s, C, distil=False), False, cfg)
    net = make_student(s, C, distil=True)
    t_full = whole_step_ms(s, net, True, cfg)

    # -- the distillation step taken apart: each part timed on its own, inputs prepared untimed
    part = PartTimer(cfg["step_warmup"], cfg["step_repeats"])
    x, (z_vit, f_vit, z_cnn, f_cnn) = time_inputs_and_teachers(part, s)
    time_student(part, net, x["student"])
    z_s, f_s = net.tap(x["student"])
    f_map = f_s["map"].detach().requires_grad_()  # cut here: the SDB's own cost, not the student's
    time_sdb(part, net, f_map, f_vit["map"], f_cnn["map"])
    pred, target = net.sdd(f_map, f_vit["map"], f_cnn["map"])
    # Leaves for the loss arithmetic: it is timed without the networks behind it.
    leaves = lambda: (z_s.detach().requires_grad_(), f_s["embed"].detach().requires_grad_(),
                      pred.detach().requires_grad_())
    loss_of = lambda lv: loss_terms(lv[0], lv[1], lv[2], target, z_vit, z_cnn, f_vit["embed"],
                                    s.y, s.targs)
    time_losses(part, loss_of, leaves)
    # The optimizer's work does not depend on the gradients' values: fill them once.
    loss_terms(z_s, f_s["embed"], *net.sdd(f_s["map"], f_vit["map"], f_cnn["map"]), z_vit, z_cnn,
               f_vit["embed"], s.y, s.targs).backward()
    time_optimizer(part, net, s.targs.clip_grad)
    term_ms = time_loss_terms(s, leaves, target, z_vit, z_cnn, f_vit["embed"],
                              cfg["step_warmup"], cfg["step_repeats"])
    rate = sustained_rate(cfg["matmul_n"], 1, cfg["step_repeats"])
    return step_report(args, cfg, s, C, part.rows, t_full, t_ce, term_ms, rate)


def step_report(args, cfg, s, C, parts, t_full, t_ce, term_ms, rate):
    """The step section's markdown: the parts next to their lower bounds, the whole steps."""
    clip_cfg, names = models.PRESETS[args.step_preset]["clip"], s.names
    warm, reps = cfg["step_warmup"], cfg["step_repeats"]

    def row(name, ms, g):  # a part, its share of the full step, its MACs and its lower bound
        bound = 1000 * g / rate
        return [name, f"{ms:.2f}", f"{100 * ms / t_full:.1f}%", f"{g:.4f}", f"{bound:.3f}",
                f"{ms / bound:.0f}x" if bound > 0 else "-"]
    rows = [row(*p) for p in parts] + [row("**sum of the parts**", sum(p[1] for p in parts),
                                           sum(p[2] for p in parts))]
    rows += [[f"**{what}** (train.train_one_epoch)", f"{ms:.2f}", f"{100 * ms / t_full:.1f}%", "", "", ""]
             for what, ms in (("full distillation step", t_full), ("CE-only student step", t_ce))]
    loss_ms = sum(ms for name, ms, _ in parts if name.startswith("losses"))
    top = max(parts, key=lambda p: p[1])
    lines = [
        f"Preset `{args.step_preset}` ({names['vit_teacher']} + {names['cnn_teacher']} -> "
        f"{names['student']}), batch {args.batch_size}, clip {clip_cfg['num_frames']}x"
        f"{clip_cfg['size']}x{clip_cfg['size']}, {C} classes, CPU, float32; median of {reps} "
        f"after {warm} warm-up; whole steps: {cfg['steps_per_call']} step(s) per timed call.",
        f"Sustained rate: dense {cfg['matmul_n']}x{cfg['matmul_n']} float32 matmul = "
        f"{rate:.1f} GMAC/s. Lower bound of a part = its GMACs (FlopCounterMode on the timed "
        f"call, backward included; matmuls and convs only) / that rate.", "",
        md_table(["part of the distillation step", "ms", "share of step", "GMACs", "bound ms",
                  "measured / bound"], rows), "",
        f"Loss arithmetic (forward + backward): {loss_ms:.2f} ms = "
        f"{100 * loss_ms / t_full:.1f}% of the step; largest part: {top[0]} ({top[1]:.1f} ms, "
        f"{100 * top[1] / t_full:.0f}%). Distillation costs {t_full / t_ce:.1f}x the CE-only step.",
        "Loss terms one by one (forward + backward, ms): " + ", ".join(
            f"{n} {ms:.2f}" for n, ms in term_ms.items()) + ".",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- 3. efficiency
def bench_efficiency(args, cfg):
    """Params, GMACs per view, CPU latency per clip of each preset's models -> markdown."""
    rows, notes = [], []
    for preset in args.presets:
        # The paper preset with Kinetics-400's 400 classes, as the published tables count them;
        # tiny with the synthetic set's 9.
        num_classes = 400 if preset != "tiny" else 9
        warm, reps = cfg["latency"]["tiny" if preset == "tiny" else "large"]
        cost = {}
        for role in ("vit_teacher", "cnn_teacher", "student"):
            name = models.PRESETS[preset][role]
            spec = models.input_spec(name)
            torch.manual_seed(0)
            model = models.build_model(name, num_classes)
            shape = (3, spec.frames, spec.size, spec.size)
            p, g = models.count_params(model), models.count_gmacs(model, shape)
            ms = cpu_latency_ms(model, shape, warmup=warm, repeats=reps)
            cost[role] = (p, g, ms)
            del model  # MViTv2-S: free it before building the next model
            rows.append([preset, role, name, "x".join(map(str, shape[1:])), f"{p / 1e6:.3f}M",
                         f"{g:.4f}", f"{ms:.1f}", f"{warm}/{reps}"])
        (p_s, g_s, ms_s), (p_v, g_v, ms_v) = cost["student"], cost["vit_teacher"]
        notes.append(f"`{preset}`: student vs ViT teacher: {100 * (1 - p_s / p_v):.1f}% fewer "
                     f"parameters, {100 * (1 - g_s / g_v):.1f}% fewer GMACs per view, "
                     f"{100 * (1 - ms_s / ms_v):.1f}% lower CPU latency ({ms_v / ms_s:.1f}x faster).")
    return "\n".join([
        "Latency: cpu_latency_ms, one clip (batch 1), eval mode, inference_mode, median of "
        "`repeats` after `warmup`; GMACs: models.count_gmacs (multiply-accumulates per view).", "",
        md_table(["preset", "role", "model", "input", "params", "GMACs/view", "CPU ms/clip",
                  "warmup/repeats"], rows), "",
        *notes,
        "Paper: X3D-S vs MViTv2-S, ~89% fewer parameters (3.79M vs 34.54M) and ~96% fewer FLOPs "
        "(1.96 vs 64.22 GMACs).",
    ])


# ---------------------------------------------------------------------------- 4. deployment
RUNTIMES = ("PyTorch", "ONNX Runtime", "TorchScript")


def deployment_runners(classifier, example, folder, name, formats):
    """The deployed model in each runtime -> {runtime: (fn(threads) -> clip -> logits, export s)}.
    PyTorch: eager under inference_mode; the others: the file export.py writes, loaded back."""
    def eager(threads):
        torch.set_num_threads(threads)
        return torch.inference_mode()(lambda clip: classifier(clip))

    runners = {"PyTorch": (eager, 0.0)}
    for runtime, fmt in (("ONNX Runtime", "onnx"), ("TorchScript", "torchscript")):
        if fmt not in formats:
            continue
        path, t0 = os.path.join(folder, name + export.FORMATS[fmt]), time.perf_counter()
        if fmt == "onnx":
            export.export_onnx(classifier, path, example)  # fixed batch 1, as deployed
        else:
            export.export_torchscript(classifier, path, example)
        seconds = time.perf_counter() - t0

        def load(threads, path=path, fmt=fmt):
            torch.set_num_threads(threads)  # TorchScript runs on torch's pool; ORT has its own
            return export.load_runner(path, fmt, threads)
        runners[runtime] = (load, seconds)
    return runners


def time_deployed(preset, role, example, folder, thread_counts, has_onnx, cfg):
    """One preset's model as deployed, in each runtime at each thread count -> (table row, note
    on the exported files' agreement with PyTorch, {(runtime, threads): ms per clip}, GMACs)."""
    num_classes = 400 if preset != "tiny" else 9  # as in the efficiency section
    warm, reps = cfg["deploy"]["tiny" if preset == "tiny" else "large"]
    clip = models.PRESETS[preset]["clip"]
    name = models.PRESETS[preset][role]
    spec = models.input_spec(name)
    torch.manual_seed(0)
    model = models.build_model(name, num_classes).eval()
    g = models.count_gmacs(model, (3, spec.frames, spec.size, spec.size))
    classifier = deploy.ClipClassifier(model, spec).eval()
    # Exporting costs seconds per model (minutes for MViTv2-S): --quick exports only the student
    # to ONNX, the model that is deployed.
    with_onnx = has_onnx and (role == "student" or not cfg["deploy_quick"])
    formats = {"torchscript", "onnx"} if with_onnx else {"torchscript"}
    runners = deployment_runners(classifier, example, folder, f"{preset}_{role}", formats)
    with torch.inference_mode():
        z_ref = classifier(example)
    ms, cells, diffs = {}, [], []
    for runtime in RUNTIMES:
        if runtime not in runners:
            cells += ["-"] * len(thread_counts)
            continue
        for t in thread_counts:
            run = runners[runtime][0](t)
            ms[runtime, t] = median_ms(lambda: run(example), warm, reps)
            cells.append(f"{ms[runtime, t]:.1f}")
        if runtime != "PyTorch":  # the timed file computes what PyTorch computes
            diffs.append(f"{runtime} {(run(example) - z_ref).abs().max().item():.1e} "
                         f"(export {runners[runtime][1]:.0f} s)")
    row = [preset, role, name, f"{clip['num_frames']}x{clip['size']} -> "
           f"{spec.frames}x{spec.size}", f"{g:.4f}", *cells]
    note = f"`{preset}` {role}: max |logits - PyTorch's| " + (", ".join(diffs) or "-")
    return row, note, ms, g  # the models go with this frame (MViTv2-S: before the next is built)


def bench_deployment(args, cfg):
    """Batch-1 latency of each preset's deployed models (uint8 clip -> logits, deploy.ClipClassifier)
    in PyTorch eager, ONNX Runtime and TorchScript, at 1 and all threads -> markdown."""
    try:  # ONNX needs the optional packages; without them the table has PyTorch and TorchScript
        import onnx, onnxruntime, onnxscript  # noqa: F401, E401
        has_onnx = True
    except ImportError:
        has_onnx = False
    all_threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                   else os.cpu_count() or 1)
    # --quick: one thread (a smoke run; on a shared machine all-core timings would mean nothing)
    thread_counts = [1] if cfg["deploy_quick"] and not args.threads else sorted({1, all_threads})
    before = torch.get_num_threads()
    rows, notes, ratio_rows = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for preset in args.presets:
            clip = models.PRESETS[preset]["clip"]
            example = torch.randint(0, 256, (1, 3, clip["num_frames"], clip["size"], clip["size"]),
                                    generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
            ms, gmacs = {}, {}  # ms: (role, runtime, threads) -> ms per clip
            for role in ("vit_teacher", "cnn_teacher", "student"):
                row, note, role_ms, gmacs[role] = time_deployed(preset, role, example, folder,
                                                                thread_counts, has_onnx, cfg)
                rows.append(row)
                notes.append(note)
                ms.update({(role, *key): v for key, v in role_ms.items()})
            mac_ratio = gmacs["student"] / gmacs["vit_teacher"]
            for runtime in RUNTIMES:
                for t in thread_counts:
                    if ("student", runtime, t) in ms and ("vit_teacher", runtime, t) in ms:
                        s_ms, v_ms = ms["student", runtime, t], ms["vit_teacher", runtime, t]
                        ratio_rows.append([preset, runtime, t, f"{s_ms:.1f}", f"{v_ms:.1f}",
                                           f"{s_ms / v_ms:.3f} ({v_ms / s_ms:.1f}x faster)", f"{mac_ratio:.3f}"])
    torch.set_num_threads(before)
    return deployment_report(cfg, thread_counts, has_onnx, rows, ratio_rows, notes)


def deployment_report(cfg, thread_counts, has_onnx, rows, ratio_rows, notes):
    """The deployment section's markdown: how it was timed, the latencies, the ratios."""
    header = ["preset", "role", "model", "clip -> model input", "GMACs/view"] + [
        f"{r} ms, {t} thr" for r in RUNTIMES for t in thread_counts]
    missing = "" if has_onnx else f" ONNX Runtime: not installed ({export.EXPORT_EXTRA})."
    return "\n".join([
        "Deployed model: deploy.ClipClassifier (uint8 clip -> logits: models.adapt_input + the network), "
        "batch 1, one clip, float32, CPU; ms per clip = median of `repeats` runs after `warmup` "
        f"(warmup/repeats: tiny {'/'.join(map(str, cfg['deploy']['tiny']))}, other presets "
        f"{'/'.join(map(str, cfg['deploy']['large']))}). "
        "PyTorch: eager under inference_mode; ONNX Runtime: export.py's file (dynamo exporter, "
        "fixed batch 1), CPU provider, intra-op threads as stated; TorchScript: torch.jit.trace, "
        "torch's threads. Random weights (latency does not depend on them)." + missing
        + (" --quick: ONNX for the students only, 1 thread unless --threads." if cfg["deploy_quick"] else ""), "",
        md_table(header, rows), "",
        "Student / ViT teacher: latency ratio next to the multiply-accumulate ratio (the paper's "
        "efficiency claim is the MAC one).", "",
        md_table(["preset", "runtime", "threads", "student ms", "ViT teacher ms", "student / ViT latency",
                  "student / ViT MACs"], ratio_rows), "",
        "Exported files vs PyTorch on the timed clip: " + "; ".join(notes) + ".",
    ])


# -------------------------------------------------------------------------------------- main
def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--presets", default="paper,tiny",
                   help="presets of the efficiency and deployment tables (paper: MViTv2-S takes seconds per clip)")
    p.add_argument("--step-preset", default="tiny", help="preset of the training-step section")
    p.add_argument("--batch-size", type=int, default=16, help="clips per training step")
    p.add_argument("--quick", action="store_true",
                   help="few repeats and small data sizes: a smoke run, not a measurement")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's choice, stated in the output)")
    p.add_argument("--work-dir", default="runs/bench", help="where the generated videos are kept")
    p.add_argument("--results", default="RESULTS.md", help="markdown file to write the tables into")
    return p


def settings(quick):
    """Repeats and sizes: full measurements, or a quick smoke run."""
    if quick:
        return dict(reps=1, batches=2, synthetic=dict(videos_per_class=6),
                    hmdb_like=dict(num_classes=2, videos_per_class=4, num_frames=64),
                    step_warmup=1, step_repeats=2, steps_per_call=1, matmul_n=512,
                    latency={"tiny": (1, 3), "large": (1, 1)},
                    deploy={"tiny": (1, 3), "large": (1, 1)}, deploy_quick=True)
    return dict(reps=3, batches=20, synthetic={},  # {}: the synthetic set's default settings
                hmdb_like=dict(num_classes=5, videos_per_class=10, num_frames=90),
                step_warmup=2, step_repeats=7, steps_per_call=3, matmul_n=1024,
                latency={"tiny": (3, 10), "large": (1, 3)},
                # deployment: (warmup, repeats); the paper preset's MViTv2-S takes ~1-3 s per clip
                deploy={"tiny": (20, 200), "large": (3, 15)}, deploy_quick=False)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = get_args_parser().parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    args.presets = [s.strip() for s in args.presets.split(",") if s.strip()]
    bad = [s for s in sections if s not in SECTIONS] + [p for p in args.presets + [args.step_preset]
                                                         if p not in models.PRESETS]
    if bad:
        raise SystemExit(f"unknown section or preset {bad}; sections: {', '.join(SECTIONS)}; "
                         f"presets: {', '.join(sorted(models.PRESETS))}")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = settings(args.quick)
    run = {"data": bench_data, "step": bench_step, "efficiency": bench_efficiency,
           "deployment": bench_deployment}
    command = "python bench.py " + shlex.join(argv)
    text = open(args.results).read() if os.path.exists(args.results) else ""
    body = get_section(text, "bench") or ""
    for name in sections:
        t0 = time.perf_counter()
        print(f"[bench] {name} ...", flush=True)
        table = run[name](args, cfg)
        quick = " (--quick: a smoke run, not a measurement)" if args.quick else ""
        stamp = (f"### {name}\n\nCommand: `{command}`{quick}; {time.strftime('%Y-%m-%d %H:%M')}, "
                 f"{time.perf_counter() - t0:.0f} s.  \nMachine: {machine()}.\n\n")
        print(stamp + table + "\n", flush=True)
        body = replace_section(body, f"bench-{name}", stamp + table)
    # Sub-sections in a fixed order, whichever ran this time.
    kept = [(n, get_section(body, f"bench-{n}")) for n in SECTIONS]
    body = "## What the method costs (bench.py)\n\n" + "\n\n".join(
        "\n".join([markers(f"bench-{n}")[0], s, markers(f"bench-{n}")[1]]) for n, s in kept if s)
    write_section(args.results, "bench", body)
    print(f"[bench] wrote {', '.join(sections)} into {args.results}")


if __name__ == "__main__":
    main()
