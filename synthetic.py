"""The synthetic benchmark: a "tiny HMDB51" rendered as real videos in HMDB51's on-disk layout.

Reading guide
-------------
Why: the paper evaluates on HMDB51 (arXiv 2511.09469, its experiments); the default run must
work on a laptop CPU in minutes with no download, and with the same loader code as real data.
So `make_synthetic_hmdb51` writes MPEG-4 Part 2 AVIs (the codec of HMDB51's XviD/DivX files, with
B-frames) plus official-format split files, and data.HMDB51 reads them like the real set.

What a video shows: two discs on a cluttered, textured background.
  local classes       one disc does something visible in a small neighbourhood (pulse, blink,
                      orbit, zigzag); the other sits still;
  relational classes  each disc alone just swings back and forth; the class is the swing's axis
                      and phase *relative to the other disc*, far away (poke, sway, shear,
                      follow, side_by_side).
Design intent: a small CNN pooling local motion features should find the relational kind hard,
global attention easier (whether the tiny teachers split that way is measured, not assumed).

Top to bottom: the class table `SYNTHETIC_ACTIONS`, the geometry of one video
(`synthetic_layout`, one motion function per primitive in `MOTIONS`), its pixels
(`synthetic_video`), the AVI writer (`write_video`), the split files, `make_synthetic_hmdb51`
(deterministic in its seed; its docstring lists the difficulty knobs) and
`ensure_synthetic_hmdb51` (write once, rewrite when the settings differ).
`python synthetic.py [folder]` writes a small set, prints its classes and reads it back.
"""
import argparse
import concurrent.futures
import contextlib
import functools
import inspect
import json
import math
import os
import shutil
import tempfile
import time
from typing import NamedTuple

import av
import numpy as np
from tqdm import tqdm

import data
from data import SPLIT_DIRNAME


# Every video shows two discs over a cluttered, textured background; one or both of them move.
# local: one disc does something you can see in a small neighbourhood; the other one sits still.
# relational: seen alone, each disc just swings back and forth along some axis; the class is that
#   axis and the swing's phase *relative to the other disc*, which is far away (at least
#   min_distance of the frame). A small CNN that pools local motion features cannot tell these
#   classes apart within a group; attention over the whole frame can.
# Why swings and not straight paths: a straight path fast enough to stand out from the noise
# leaves a small frame within one clip; a swing stays put.
# All classes are invariant to a horizontal flip (a flip mirrors the line joining the discs about
# the vertical, which is the same range of tilts seen from the other disc, and which disc acts is
# random), so flip augmentation never changes a label; none is defined by the direction of time.
SYNTHETIC_ACTIONS = {
    "pulse": ("local", "one disc stays in place and grows and shrinks"),
    "poke": ("relational", "one disc swings towards and away from the other, still one"),
    "blink": ("local", "one disc stays in place and fades out and in"),
    "sway": ("relational", "one disc swings across the line to the other, still one"),
    "orbit": ("local", "one disc circles a nearby point (either direction)"),
    "shear": ("relational", "both discs swing across the line joining them, in opposite phase"),
    "zigzag": ("local", "one disc drifts while swinging sideways"),
    "follow": ("relational", "both discs swing along the line joining them, in step"),
    "side_by_side": ("relational", "both discs swing across the line joining them, in step"),
}
# The pretraining corpus ("synthetic Kinetics", `make_synthetic_kinetics`) shares these
# primitives and adds two of its own; its labels are finer (primitive x speed x shape), and two
# target classes (zigzag, follow) are not among them, as HMDB51 has classes Kinetics lacks.
PRIMITIVES = {
    **SYNTHETIC_ACTIONS,
    "bounce": ("local", "one disc hops back and forth along a line, turning at one end"),
    "breathe": ("relational", "both discs swing along the line joining them, in opposite phase "
                "(half as far)"),
}
CORPUS_ACTIONS = ("pulse", "poke", "blink", "sway", "orbit", "shear", "side_by_side", "bounce",
                  "breathe")
CORPUS_SPEEDS = {"slow": (14, 20), "fast": (5, 8)}  # swing periods in frames; the target: (8, 14)
CORPUS_SHAPES = ("disc", "square")  # the target set shows discs only


def corpus_classes():
    """The corpus's class table: name -> (primitive, swing period range, shape); 36 classes."""
    return {f"{a}_{speed}_{shape}": (a, period, shape) for a in CORPUS_ACTIONS
            for speed, period in CORPUS_SPEEDS.items() for shape in CORPUS_SHAPES}


def _unit(angle):
    return np.array([math.cos(angle), math.sin(angle)], np.float32)


class Draw(NamedTuple):
    """One attempt's draws that every motion shares (lengths in pixels, periods in frames)."""
    t: np.ndarray  # (L,) frame index
    u: np.ndarray  # (2,) unit vector along the line from disc 0 to disc 1
    n: np.ndarray  # (2,) unit vector across that line
    A: float  # swing amplitude
    wave: np.ndarray  # (L,) sin of the swing's phase
    swing: np.ndarray  # (L, 1) signed offset along an axis
    gap: float  # distance between the discs' centers at rest
    period: tuple  # range of swing periods (orbit's speed is drawn from it)


# The motion of each primitive: what disc 0 (the actor) does, and disc 1 for the relational
# ones, written into centers p (2, L, xy), radii r (2, L) and opacities alpha (2, L). Motions that
# need more randomness draw it from `rng`, in the order they are written here.
def _pulse(d, p, r, alpha, rng):
    r[0] *= 1 + 0.35 * d.wave


def _blink(d, p, r, alpha, rng):
    alpha[0] = 0.5 * (1 + d.wave)


def _orbit(d, p, r, alpha, rng):
    turns = rng.choice([-1.0, 1.0]) * d.t / rng.uniform(d.period[0] + 2, d.period[1] + 2)
    angle = 2 * math.pi * turns + rng.uniform(0, 2 * math.pi)
    p[0] = 1.2 * d.A * np.stack([np.cos(angle), np.sin(angle)], axis=1)


def _bounce(d, p, r, alpha, rng):
    p[0] = np.abs(d.swing) * d.n  # |A sin|: out and back along n, turning sharply at 0


def _zigzag(d, p, r, alpha, rng):
    drift = rng.uniform(2.0, 3.0) * d.A * d.t / max(len(d.t) - 1, 1)
    p[0] = np.outer(drift, d.u) + d.swing * d.n


def _swing_pair(axis, phase, d, p, r, alpha, rng):
    """Relational: disc 0 swings `axis` ("along" or "across") the line to disc 1, which rests at
    `gap` along u and keeps still (phase 0), swings in opposite phase (-1) or in step (+1)."""
    a = d.u if axis == "along" else d.n
    p[0] = d.swing * a
    p[1] = d.gap * d.u
    if phase < 0:
        p[1] -= d.swing * a
    elif phase > 0:
        p[1] += d.swing * a


MOTIONS = {
    "pulse": _pulse, "blink": _blink, "orbit": _orbit, "bounce": _bounce, "zigzag": _zigzag,
    "poke": functools.partial(_swing_pair, "along", 0),
    "sway": functools.partial(_swing_pair, "across", 0),
    "shear": functools.partial(_swing_pair, "across", -1),
    "follow": functools.partial(_swing_pair, "along", 1),
    "side_by_side": functools.partial(_swing_pair, "across", 1),
    "breathe": functools.partial(_swing_pair, "along", -1),
}


def _draw_configuration(action, rng, t, S, min_distance, amplitude, period, radius, tilt):
    """One random configuration of a video of `action` -> (p, r, alpha), as synthetic_layout
    returns them but not yet placed in the frame (it may not fit)."""
    L = len(t)
    r = np.repeat(rng.uniform(*radius, size=(2, 1)) * S, L, axis=1)  # nuisance: size
    alpha = np.ones((2, L), np.float32)
    p = np.zeros((2, L, 2), np.float32)
    # The line from disc 0 to disc 1 (nuisance): at most `tilt` away from horizontal.
    u = _unit(rng.uniform(-tilt, tilt))
    n = np.array([-u[1], u[0]])            # across that line
    A = rng.uniform(*amplitude) * S        # swing amplitude (nuisance: speed and extent)
    wave = np.sin(2 * math.pi * t / rng.uniform(*period) + rng.uniform(0, 2 * math.pi))
    # (L, 1) signed offset along an axis. In "breathe" each disc swings half as far, so that
    # the two together close the gap by A, as "poke" does: wider would not fit the frame.
    swing = A * wave[:, None] / (2 if action == "breathe" else 1)
    # Centers this far apart at rest keep them >= min_distance apart at every moment.
    gap = (min_distance + rng.uniform(0, 0.08)) * S + (A if action in ("poke", "breathe") else 0)
    MOTIONS[action](Draw(t, u, n, A, wave, swing, gap, period), p, r, alpha, rng)
    if PRIMITIVES[action][0] == "local":
        # The still distractor, at least `gap` away from every position of the actor.
        reach = np.linalg.norm(p[0] - p[0].mean(axis=0), axis=1).max()
        p[1] = p[0].mean(axis=0) + _unit(rng.uniform(0, 2 * math.pi)) * (reach + gap)
    if rng.random() < 0.5:
        p = p[::-1].copy()  # which disc is the actor is no cue either
        r, alpha = r[::-1].copy(), alpha[::-1].copy()
    return p, r, alpha


def synthetic_layout(action, rng, num_frames, width, height, min_distance=0.3,
                     amplitude=(0.1, 0.15), period=(8, 14), radius=(0.09, 0.13), tilt=0.35):
    """Where the two discs are in each frame of one video of `action` -> (p, r, alpha):
    centers (2, L, xy) in pixels, radii (2, L), opacities (2, L). Lengths are fractions of the
    short side S and the discs stay inside the central S x S square (what the test center crop
    keeps), so any frame size poses the same task; periods are in frames."""
    S = min(width, height)
    t = np.arange(num_frames, dtype=np.float32)
    # Draw a configuration until it fits into the square; disc 0 is the actor.
    for _attempt in range(1000):
        p, r, alpha = _draw_configuration(action, rng, t, S, min_distance, amplitude, period,
                                          radius, tilt)
        # Extent of the discs (centers +- radius) over the whole video.
        lo = (p - r.max(axis=1)[:, None, None]).reshape(-1, 2).min(axis=0)
        hi = (p + r.max(axis=1)[:, None, None]).reshape(-1, 2).max(axis=0)
        if np.all(hi - lo <= S - 2):
            break
    else:
        raise RuntimeError(f"cannot fit a {action!r} video into {width}x{height}: lower "
                           "min_distance or amplitude")
    # A random place inside the central square, 1 px from its border (nuisance: position).
    corner = np.array([(width - S) / 2, (height - S) / 2]) + 1
    p += (corner - lo + rng.uniform(0, 1, 2) * (S - 2 - (hi - lo))).astype(np.float32)
    return p, r, alpha


def synthetic_video(action, rng, num_frames, width, height, noise=0.02, clutter=2, texture=0.03,
                    shape="disc", **layout):
    """Render one video of `action` -> uint8 (num_frames, height, width, 3) with two objects of
    `shape` ("disc" or "square", side = diameter); `layout` goes to synthetic_layout."""
    p, r, alpha = synthetic_layout(action, rng, num_frames, width, height, **layout)
    S = min(width, height)

    # Background: random colour + smooth texture + static clutter rectangles (nuisance).
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(0.4, 0.6, 3).astype(np.float32)
    bg = np.broadcast_to(base, (height, width, 3)).copy()
    for _ in range(3):
        k = _unit(rng.uniform(0, 2 * math.pi)) * rng.uniform(0.1, 0.4) * 48 / S  # wavelength ~ S
        grating = np.sin(xx * k[0] + yy * k[1] + rng.uniform(0, 2 * math.pi))
        bg += texture * grating[..., None] * rng.uniform(-1, 1, 3).astype(np.float32)
    for _ in range(clutter):
        w, h = rng.uniform(0.05, 0.15, 2) * S
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        top, left = int(max(cy - h / 2, 0)), int(max(cx - w / 2, 0))
        bg[top:int(cy + h / 2) + 1, left:int(cx + w / 2) + 1] = rng.uniform(0, 1, 3)
    # Disc colours far enough from the background colour to stay visible (nuisance: colour).
    colours = []
    while len(colours) < 2:
        c = rng.uniform(0, 1, 3).astype(np.float32)
        if np.abs(c - base).sum() > 0.6:
            colours.append(c)

    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for f in range(num_frames):
        img = bg.copy()
        for d in range(2):
            # Antialiased disc: coverage ramps over one pixel, so sub-pixel motion stays visible.
            dx, dy = np.abs(xx - p[d, f, 0]), np.abs(yy - p[d, f, 1])
            dist = np.sqrt(dx ** 2 + dy ** 2) if shape == "disc" else np.maximum(dx, dy)
            cover = (np.clip(r[d, f] + 0.5 - dist, 0, 1) * alpha[d, f])[..., None]
            img = img * (1 - cover) + colours[d] * cover
        img += rng.standard_normal(img.shape, dtype=np.float32) * noise  # per-frame noise
        frames[f] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return frames


def write_video(path, frames, fps=30, max_b_frames=2, gop_size=12):
    """uint8 (L, H, W, 3) -> MPEG-4 Part 2 (the codec of HMDB51's XviD/DivX files) in AVI, with
    B-frames and a keyframe every `gop_size` frames like those files."""
    with av.open(os.fspath(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.max_b_frames = max_b_frames
        stream.codec_context.gop_size = gop_size
        # Constant quantizer 3 (of 1-31): near-lossless, so the noise we add is the noise we get.
        stream.codec_context.options = {"flags": "+qscale", "global_quality": str(3 * 118)}
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _write_splits(split_dir, names_by_class, seed, train_fraction):
    """Three official-format splits: per class and split, a seeded shuffle puts train_fraction of
    the videos in train (id 1) and the rest in test (id 2), like HMDB51's 70/30."""
    os.makedirs(split_dir, exist_ok=True)
    for cls, names in names_by_class.items():
        n_train = round(train_fraction * len(names))
        for split in (1, 2, 3):
            # Seeded by the class name, so a class keeps its splits whatever the other classes are.
            key = [seed, split, *cls.encode()]
            order = np.random.default_rng(key).permutation(len(names))
            ids = np.empty(len(names), int)
            ids[order[:n_train]], ids[order[n_train:]] = 1, 2
            with open(os.path.join(split_dir, f"{cls}_test_split{split}.txt"), "w",
                      newline="\n") as f:
                # Official files end each line with a space: keep that quirk.
                f.writelines(f"{name} {i} \n" for name, i in zip(names, ids))


def make_synthetic_hmdb51(root, num_classes=9, videos_per_class=90, num_frames=20, width=64,
                          height=48, fps=30, noise=0.02, clutter=2, texture=0.03,
                          min_distance=0.3, amplitude=(0.13, 0.18), period=(8, 14),
                          radius=(0.09, 0.13), tilt=0.15, train_fraction=0.444, seed=0):
    """Write a synthetic HMDB51 (videos + 3 official-format splits) into `root` -> root.

    Deterministic in `seed` (each video has its own generator, so changing num_classes or
    videos_per_class leaves the other videos as they were). Defaults: 9 classes x 90 videos of
    20 frames at 64x48 -> 360 train / 450 test videos per split: 40 training videos per class,
    fewer than HMDB51's ~70, so that the student's own data is scarce and what the teachers
    bring from pretraining matters (as in the paper, where they bring Kinetics; with more videos
    a tuned CE-only student catches up and distillation has nothing left to add), and a test
    split larger than the training split, so that a difference of a few points between two
    students is more than the noise. The tiny preset reads 8 frames at stride 2 (15 of the 20)
    and 32x32 crops of them.
    Sizes: num_classes (first classes of SYNTHETIC_ACTIONS, whose order alternates local and
    relational so every prefix keeps both kinds), videos_per_class, num_frames, width, height, fps.
    Difficulty knobs, with their defaults (the benchmark tunes these):
      noise=0.02          std of the per-frame Gaussian pixel noise, in [0, 1] intensity units
                          (much more drowns the motion of small discs)
      clutter=2           static rectangles of random colour in the background
      texture=0.03        amplitude of the smooth background texture
      min_distance=0.3    closest the two disc centers ever get, in units of the short side S
      amplitude=(0.13, 0.18), period=(8, 14)   swings: range of amplitude (x S) and period
                          (frames); peak speed 2 pi A / period ~ 2.5 px per frame at 64x48
      radius=(0.09, 0.13) disc radius range (x S)
      tilt=0.15           the line joining the discs is at most this far from horizontal
                          (radians; pi: any direction). With any direction the tiny models
                          must also learn rotation invariance from a few dozen videos per
                          class, which costs the teachers much of their accuracy; a small
                          tilt with larger swings keeps the task about the relations
    At the defaults almost every relational configuration fits the frame at the first draw, so no
    relational class prefers a direction or a swing size; orbit and zigzag, which travel further,
    often redraw, which favours their smaller swings a little (and moves their distractor disc).
    Raising min_distance, amplitude or tilt makes more draws retry and can bias the classes whose
    discs line up (poke, follow).
    """
    names = list(SYNTHETIC_ACTIONS)[:num_classes]
    if num_classes < 2 or len(names) < num_classes:
        raise ValueError(f"num_classes must be 2..{len(SYNTHETIC_ACTIONS)}, got {num_classes}")
    settings = {k: v for k, v in locals().items() if k not in ("root", "names")}
    # Class index = position in SYNTHETIC_ACTIONS: a video's generator does not depend on which
    # other classes are written.
    classes = {a: (a, period, "disc", [seed, list(SYNTHETIC_ACTIONS).index(a)]) for a in names}
    return _write_set(root, "tiny", classes, settings,
                      {a: SYNTHETIC_ACTIONS[a] for a in names})


def make_synthetic_kinetics(root, videos_per_class=60, num_frames=20, width=64, height=48, fps=30,
                            noise=0.02, clutter=2, texture=0.03, min_distance=0.3,
                            amplitude=(0.1, 0.15), radius=(0.09, 0.13), tilt=0.35,
                            train_fraction=0.8, seed=0):
    """Write the pretraining corpus, a synthetic "Kinetics", in the HMDB51 layout -> root.

    The tiny preset's stand-in for Kinetics-400 (which the paper's models are pretrained on):
    `corpus_classes()`, 36 classes = 9 primitives x 2 speeds x 2 shapes, from the same renderer
    as the target set. 7 of the target's 9 classes have counterparts here (each split by speed
    and shape, at speeds around the target's); zigzag and follow do not, but their parts do
    (drift + swing; swings along the line joining the objects, in `breathe`). 60 videos per class
    -> 1,728 train / 432 test videos (split 1 is the held-out split pretrain.py reports).
    Same knobs as `make_synthetic_hmdb51`; each video has its own generator, seeded apart from
    the target set's.
    """
    settings = {k: v for k, v in locals().items() if k != "root"}
    table = corpus_classes()
    classes = {name: (action, period, shape, [seed, 7, k])  # 7: a stream the target never uses
               for k, (name, (action, period, shape)) in enumerate(table.items())}
    return _write_set(root, "kinetics", classes, settings,
                      {name: PRIMITIVES[a][0] + ", " + name.split("_")[-2] + ", " + shape
                       for name, (a, _, shape) in table.items()})


MAX_PROCESSES, PARALLEL_FROM = 8, 200  # writer processes at most; the fewest videos that use them


def _write_one(job):
    """Render and write one video: (path, primitive, seed key, fps, synthetic_video keywords)."""
    path, action, key, fps, draw = job
    write_video(path, synthetic_video(action, np.random.default_rng(key), **draw), fps=fps)


def _write_set(root, prefix, classes, settings, described):
    """Videos of `classes` (name -> (primitive, period, shape, seed key)) + 3 splits -> root."""
    if settings["width"] % 2 or settings["height"] % 2:
        raise ValueError(f"width and height must be even (yuv420p), got "
                         f"{settings['width']}x{settings['height']}")
    draw = {k: settings[k] for k in ("num_frames", "width", "height", "noise", "clutter", "texture",
                                     "min_distance", "amplitude", "radius", "tilt")}
    os.makedirs(root, exist_ok=True)
    names_by_class, jobs = {}, []
    for name in sorted(classes):
        action, period, shape, key = classes[name]
        os.makedirs(os.path.join(root, name), exist_ok=True)
        names_by_class[name] = [f"{prefix}_{name}_v{v:03d}.avi" for v in range(settings["videos_per_class"])]
        # One generator per video (seed key + [v]): a video does not change when other sizes
        # change, nor with the order in which the videos are written.
        jobs += [(os.path.join(root, name, video), action, key + [v], settings["fps"],
                  dict(draw, shape=shape, period=period)) for v, video in enumerate(names_by_class[name])]
    # Rendering and encoding are pure Python + NumPy + FFmpeg, one core each: on 2 cores two
    # processes write the default set in about half the time. Small sets are not worth the start.
    processes = min(os.cpu_count() or 1, MAX_PROCESSES) if len(jobs) >= PARALLEL_FROM else 1
    with concurrent.futures.ProcessPoolExecutor(processes) if processes > 1 else \
            contextlib.nullcontext() as pool:
        done = pool.map(_write_one, jobs, chunksize=8) if pool else map(_write_one, jobs)
        for _ in tqdm(done, total=len(jobs), desc=f"writing {len(jobs)} videos to {root}",
                      leave=False, mininterval=1.0):
            pass
    _write_splits(os.path.join(root, SPLIT_DIRNAME), names_by_class, settings["seed"],
                  settings["train_fraction"])
    # Written last: its presence means the set is complete (ensure_synthetic relies on it).
    with open(os.path.join(root, SYNTHETIC_INFO), "w") as f:
        json.dump({"settings": _jsonable({"set": prefix, "generator": GENERATOR_VERSION, **settings}),
                   "classes": described}, f, indent=1)
    return root


SYNTHETIC_INFO = "synthetic_hmdb51.json"
# Bump when a change to the renderer changes the videos at the same settings: sets written by an
# older renderer are then rewritten, and the zoo's recipe cards (pretrain.py) turn stale.
GENERATOR_VERSION = 2


def _jsonable(settings):
    # Tuples become lists in JSON; compare like with like.
    return json.loads(json.dumps(settings))


def ensure_synthetic_hmdb51(root, **settings):
    """make_synthetic_hmdb51(root, **settings) unless `root` already holds exactly that set -> root.

    The settings (defaults filled in) are compared with the SYNTHETIC_INFO file the generator
    writes last, so an interrupted or differently made set is rewritten. Only what the generator
    makes is removed; a folder holding anything else is refused."""
    return _ensure(make_synthetic_hmdb51, "tiny", set(SYNTHETIC_ACTIONS), root, settings)


def ensure_synthetic_kinetics(root, **settings):
    """make_synthetic_kinetics(root, **settings) unless `root` already holds that corpus -> root."""
    return _ensure(make_synthetic_kinetics, "kinetics", set(corpus_classes()), root, settings)


def _ensure(make, prefix, class_names, root, settings):
    bound = inspect.signature(make).bind(root, **settings)
    bound.apply_defaults()
    wanted = _jsonable({"set": prefix, "generator": GENERATOR_VERSION,
                        **{k: v for k, v in bound.arguments.items() if k != "root"}})
    info = os.path.join(root, SYNTHETIC_INFO)
    if os.path.isfile(info):
        with open(info) as f:
            if json.load(f).get("settings") == wanted:
                return root
    if os.path.isdir(root):
        ours = class_names | {SPLIT_DIRNAME, SYNTHETIC_INFO}
        foreign = sorted(set(os.listdir(root)) - ours)
        if foreign:
            raise FileExistsError(f"{root} is not a synthetic dataset folder (it holds "
                                  f"{foreign[:3]}); choose another folder for the synthetic set")
        for name in os.listdir(root):
            path = os.path.join(root, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
    return make(root, **settings)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write a small synthetic HMDB51, list its classes, "
                                                 "read it back with data.py's demo.")
    parser.add_argument("folder", nargs="?", default=None,
                        help="where to write it (default: a temporary folder, deleted afterwards)")
    parser.add_argument("--videos-per-class", type=int, default=10,
                        help="videos per class (default: 10; make_synthetic_hmdb51 uses 90)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.folder or os.path.join(tmp, "tiny_hmdb51")
        start = time.perf_counter()
        make_synthetic_hmdb51(root, videos_per_class=args.videos_per_class)
        print(f"wrote a synthetic HMDB51 to {root} in {time.perf_counter() - start:.1f} s")
        for name, (kind, what) in SYNTHETIC_ACTIONS.items():
            print(f"  {name:13s} {kind:10s} {what}")
        data.main([root])


if __name__ == "__main__":
    main()
