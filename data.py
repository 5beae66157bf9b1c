"""HMDB51 on disk -> uint8 clips: the split files and the Dataset (real data or the synthetic twin).

Reading guide
-------------
No paper equation lives here; the paper evaluates on HMDB51 split 1 and the mean of splits 1-3,
with clip and video accuracy. Decoding is decode.py; the synthetic set is synthetic.py.

1. Split files (`read_split`). The official layout after unpacking `hmdb51_org.rar` and
   `test_train_splits.rar` (README, "Getting HMDB51"):
       <root>/<class>/<video>.avi
       <root>/testTrainMulti_7030_splits/<class>_test_split<k>.txt    lines "<video>.avi <id>"
   id 1 = train, 2 = test, 0 = unused. The class name is the file name minus the exact suffix
   "_test_split<k>.txt" (never a glob: `climb` is a prefix of `climb_stairs`); class index =
   position in the sorted class list. Names are taken literally (spaces, `!`, `(`, `&`, `#`; no
   shell ever sees them); CRLF and trailing whitespace are stripped.
2. `HMDB51` Dataset: indexes *videos* (one sample = one video; no decoding at construction).
   Two separate choices: `subset` ("train" or "test": which videos of the split) and `mode`
   ("train" or "eval": how a clip is sampled; default: "train" for the training subset).
   mode "train": random temporal window (num_frames frames, frame_stride apart) +
   RandomResizedCrop + horizontal flip; mode "eval": centered window, short side -> `size`,
   center crop; multi-view eval: num_clips uniformly spaced windows x num_crops crops along the
   long side -> (V, 3, L, S, S). Videos shorter than a window repeat their first/last frame
   (indices are clamped), never dropped. Returns uint8 `(3, L, S, S)` (L frames of S x S pixels)
   and an int label; models.adapt_input converts and normalizes per model. `eval_views(path,
   ...)` gives the same evaluation views for any one video file, outside a dataset (predict.py).
3. Bad videos. Training: a video that fails to decode is reported with `warnings.warn` (naming the
   file), counted in `dataset.num_failed` (shared by all DataLoader workers), and replaced by a
   random other video, so an epoch never dies on one broken file. Evaluation excludes them: in
   mode "eval" `__getitem__` returns None for an undecodable video, and `collate_skip_failed`
   drops the Nones and counts them in the batch it returns, an `EvalBatch(clips, labels,
   num_failed)`:

       loader = DataLoader(test_set, batch_size=8, collate_fn=collate_skip_failed)
       excluded = 0
       for batch in loader:
           excluded += batch.num_failed   # summed per batch: right with workers and across ranks
           if batch.clips is None:        # every video of this batch failed
               continue
           logits = model(batch.clips)    # (B, 3, L, S, S), or (B, V, 3, L, S, S) with V views
           ...                            # report `excluded` next to the accuracy

   `check(dataset)` scans a dataset up front and lists unreadable and too-short videos.
4. `preload=True` decodes every video once, at construction, and keeps the frames in memory:
   for a small set on a CPU with few cores, where the model already uses every core, so
   DataLoader workers cannot hide the decoding and it would repeat every epoch (the default
   synthetic set: ~150 MB; train.py turns it on there). The clips are the same as without it.
   Real HMDB51 would not fit (6,766 videos of ~100 frames at 320x240 would be ~150 GB decoded):
   leave it off and use workers.
"""
import argparse
import multiprocessing
import os
import sys
import warnings
from typing import NamedTuple

import av
import numpy as np
import torch
from torch.utils.data import Dataset, Subset, default_collate
from torchvision import tv_tensors
from torchvision.transforms import v2

from decode import VideoDecodeError, count_frames, decode_frames, decode_stats

SPLIT_DIRNAME = "testTrainMulti_7030_splits"
SPLIT_IDS = {"1": "train", "2": "test", "0": "unused"}
SUBSETS = {"train": "1", "test": "2"}  # subset -> its id in the split files
GETTING_HMDB51 = 'see the section "Getting HMDB51" in README.md for how to download and unpack it'
LAYOUT = (f"<root>/<class>/<video>.avi and <root>/{SPLIT_DIRNAME}/<class>_test_split<k>.txt "
          "(or give the two folders separately: train.py --video-dir / --split-dir, "
          "in Python video_dir= / split_dir=)")


# ----------------------------------------------------------------------------------------------
# 1. Split files
# ----------------------------------------------------------------------------------------------

def read_split(split_dir, split=1, subset="train"):
    """Parse the official split files -> (classes, samples).

    classes: sorted class names; samples: [("<class>/<video>.avi", class index)] for the videos
    with id 1 (subset="train") or 2 (subset="test"), in file order within each class.
    """
    if split not in (1, 2, 3):
        raise ValueError(f"split must be 1, 2 or 3 (HMDB51 has three splits), got {split!r}")
    if not os.path.isdir(split_dir):
        raise FileNotFoundError(f"split folder {split_dir!r} does not exist; expected {LAYOUT}; "
                                f"{GETTING_HMDB51}")
    suffix = f"_test_split{split}.txt"
    # Exact suffix, not a glob: "climb_test_split1.txt" must not also match "climb_stairs_...".
    files = {name[:-len(suffix)]: name for name in os.listdir(split_dir)
             if name.endswith(suffix) and len(name) > len(suffix)}
    if not files:
        raise FileNotFoundError(f"no '<class>{suffix}' files in {split_dir!r}; expected {LAYOUT}; "
                                f"{GETTING_HMDB51}")
    classes = sorted(files)
    if subset not in SUBSETS:
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    wanted_id = SUBSETS[subset]
    samples = []
    for label, cls in enumerate(classes):
        path = os.path.join(split_dir, files[cls])
        seen = set()
        # Bytes -> str with os.fsdecode: names round-trip to the file system even if they are not
        # valid UTF-8; splitlines handles \n, \r\n and \r.
        with open(path, "rb") as f:
            lines = f.read().splitlines()
        for lineno, raw in enumerate(lines, start=1):
            line = os.fsdecode(raw).strip().lstrip("\ufeff")
            if not line:
                continue
            # The name may contain spaces, so the id is whatever follows the *last* whitespace.
            parts = line.rsplit(None, 1)
            if len(parts) != 2 or parts[1] not in SPLIT_IDS:
                raise ValueError(f"{path}:{lineno}: expected '<video>.avi <id>' with id 1 (train), "
                                 f"2 (test) or 0 (unused), found {line!r}")
            name, video_id = parts
            if name in seen:
                raise ValueError(f"{path}:{lineno}: {name!r} is listed twice")
            seen.add(name)
            if video_id == wanted_id:
                samples.append((f"{cls}/{name}", label))
    return classes, samples


# ----------------------------------------------------------------------------------------------
# 3. The Dataset
# ----------------------------------------------------------------------------------------------

def clip_indices(num_video_frames, num_frames, frame_stride, start):
    """`num_frames` indices `frame_stride` apart from `start`, clamped into the video: a video
    shorter than the window repeats its first / last frame instead of being dropped."""
    idx = start + frame_stride * np.arange(num_frames)
    return np.clip(idx, 0, num_video_frames - 1).tolist()


def uniform_starts(num_video_frames, span, num_clips):
    """Deterministic window starts: one centered window, or `num_clips` spread evenly from the
    first to the last possible start. A too-short video gets centered windows (clamped later)."""
    room = num_video_frames - span
    if room < 0 or num_clips == 1:
        return [room // 2] * num_clips  # negative when too short: both ends get clamped
    # Floor division keeps the middle of an odd number of clips on the centered window.
    return [i * room // (num_clips - 1) for i in range(num_clips)]


def eval_clip_indices(num_video_frames, num_frames, frame_stride, num_clips):
    """The frames of a video's `num_clips` evaluation windows -> [indices of each window]."""
    span = (num_frames - 1) * frame_stride + 1
    return [clip_indices(num_video_frames, num_frames, frame_stride, s)
            for s in uniform_starts(num_video_frames, span, num_clips)]


def crop_views(clip, size, num_crops):
    """(L, 3, H, W) -> num_crops views (L, 3, S, S): short side resized to S, then crops spread
    along the long side (one crop: the center)."""
    clip = v2.functional.resize(tv_tensors.Video(clip), size, antialias=True)
    L, C, H, W = clip.shape
    S, M = size, num_crops
    long_room = max(H, W) - S
    # Floor division keeps the middle of an odd number of crops on the center crop.
    offsets = [long_room // 2] if M == 1 else [i * long_room // (M - 1) for i in range(M)]
    views = []
    for off in offsets:
        top, left = ((H - S) // 2, off) if W >= H else (off, (W - S) // 2)
        views.append(v2.functional.crop(clip, top, left, S, S))
    return views


def _eval_views(frames, num_clips, size, num_crops):
    """Decoded frames of the windows, uint8 (num_clips * L, H, W, 3) -> [(3, L, S, S) views],
    clip-major (clip 0's crops, then clip 1's, ...)."""
    # (N * L, H, W, 3) -> (N, L, 3, H, W): torchvision's video layout, channels before pixels.
    frames = frames.view(num_clips, -1, *frames.shape[1:]).permute(0, 1, 4, 2, 3)
    return [_to_cthw(view) for clip in frames for view in crop_views(clip, size, num_crops)]


def eval_views(path, num_frames=8, frame_stride=2, size=32, num_clips=1, num_crops=1):
    """One video file -> its evaluation views, uint8 (num_clips * num_crops, 3, L, S, S),
    clip-major: the very views `HMDB51` in mode "eval" gives for it (predict.py's input).
    Raises VideoDecodeError for a file that is not a decodable video."""
    clips = eval_clip_indices(count_frames(path), num_frames, frame_stride, num_clips)
    frames = decode_frames(path, [j for clip in clips for j in clip])
    return torch.stack(_eval_views(frames, num_clips, size, num_crops))


class HMDB51(Dataset):
    """HMDB51 (or the synthetic twin) as a Dataset of videos -> (uint8 (3, L, S, S), int label).

    subset selects the videos ("train" or "test": id 1 or 2 of the split); mode the sampling
    ("train" or "eval"; default: "train" for the training subset, else "eval").
    Training sampling: random window + RandomResizedCrop(size, crop_scale) + horizontal flip.
    Eval sampling: num_clips x num_crops deterministic views; with one view the clip is
    (3, L, S, S), else (num_clips * num_crops, 3, L, S, S), clip-major (the centered clip's center
    crop is view (num_clips // 2) * num_crops + num_crops // 2). Undecodable videos: see the
    module docstring.
    """

    def __init__(self, root=None, split=1, subset="train", num_frames=8, frame_stride=2, size=32,
                 video_dir=None, split_dir=None, num_clips=1, num_crops=1, skip_missing=False,
                 mode=None, crop_scale=(0.5, 1.0), hflip=True, max_replacements=50, preload=False):
        if root is None and (video_dir is None or split_dir is None):
            raise ValueError("give root, or both video_dir and split_dir")
        if root is not None and not os.path.isdir(root):
            raise FileNotFoundError(f"HMDB51 root {root!r} does not exist; expected {LAYOUT}; "
                                    f"{GETTING_HMDB51}")
        self.video_dir = os.fspath(video_dir if video_dir is not None else root)
        self.split_dir = os.fspath(split_dir if split_dir is not None
                                   else os.path.join(root, SPLIT_DIRNAME))
        if not os.path.isdir(self.video_dir):
            raise FileNotFoundError(f"video folder {self.video_dir!r} does not exist; expected "
                                    f"{LAYOUT}; {GETTING_HMDB51}")
        mode = mode or ("train" if subset == "train" else "eval")
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        self.eval_mode = mode == "eval"
        if not self.eval_mode and (num_clips != 1 or num_crops != 1):
            raise ValueError("multi-view sampling (num_clips, num_crops) is for evaluation only")
        self.split, self.subset = split, subset
        self.num_frames, self.frame_stride, self.size = num_frames, frame_stride, size
        self.num_clips, self.num_crops = num_clips, num_crops
        self.max_replacements = max_replacements
        self.classes, listed = read_split(self.split_dir, split, subset)
        self.num_classes = len(self.classes)
        self.samples = self._on_disk(listed, skip_missing)
        self.num_missing = len(listed) - len(self.samples)

        # Frames covered by one clip.
        self.span = (num_frames - 1) * frame_stride + 1
        self.train_transform = v2.Compose([
            v2.RandomResizedCrop(size, scale=crop_scale, antialias=True),
            v2.RandomHorizontalFlip(p=0.5 if hflip else 0.0),
        ])
        # Shared with DataLoader worker processes so the main process sees every worker's count.
        # Made in the "spawn" context: such a counter reaches workers started in any way (fork,
        # spawn, forkserver), while a fork-context lock cannot be sent to spawned workers.
        self._num_failed = multiprocessing.get_context("spawn").Value("q", 0)
        # preload: per video, its uint8 (n, H, W, 3) frames or the decoding error to raise on access
        self._videos = [self._decode_all(i) for i in range(len(self.samples))] if preload else None

    def _on_disk(self, samples, skip_missing):
        """The listed samples whose video exists. A missing one raises FileNotFoundError, or with
        skip_missing is left out with a warning (a partly unpacked download)."""
        # Existence check by listing each class folder once (51 listdirs, not 3,570 stats).
        on_disk = {}
        for cls in self.classes:
            folder = os.path.join(self.video_dir, cls)
            on_disk[cls] = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        missing = [rel for rel, label in samples
                   if rel[len(self.classes[label]) + 1:] not in on_disk[self.classes[label]]]
        if missing and not skip_missing:
            raise FileNotFoundError(
                f"{len(missing)} of {len(samples)} videos listed in {self.split_dir} are missing "
                f"under {self.video_dir}, e.g. {missing[:5]}; expected {LAYOUT}. Unpack all 51 "
                f"per-class archives ({GETTING_HMDB51}), or leave them out: `python train.py "
                "--skip-missing` (in Python: skip_missing=True)")
        if missing:
            warnings.warn(f"skipping {len(missing)} videos listed in the split files but missing "
                          f"under {self.video_dir}, e.g. {missing[:3]}")
        gone = set(missing)
        return [s for s in samples if s[0] not in gone]

    def _decode_all(self, i):
        path = self.path(i)
        try:
            return decode_frames(path, range(count_frames(path)))
        except (VideoDecodeError, OSError) as err:  # reported when the video is asked for
            return err

    def __len__(self):
        return len(self.samples)

    def __repr__(self):
        mode = self.subset
        mode += f", eval {self.num_clips}x{self.num_crops} views" if self.eval_mode else ", random"
        return (f"HMDB51(split={self.split}, {mode}, {len(self)} videos, {self.num_classes} "
                f"classes, clip {self.num_frames}x{self.size}x{self.size} stride "
                f"{self.frame_stride}, videos from {self.video_dir})")

    @property
    def num_failed(self):
        """Videos that failed to decode so far, summed over all worker processes."""
        return self._num_failed.value

    def path(self, i):
        return os.path.join(self.video_dir, self.samples[i][0])

    def __getitem__(self, i):
        if self.eval_mode:
            try:
                return self._load(i)
            except (VideoDecodeError, OSError) as err:
                self._report_failure(i, err, "excluded from evaluation")
                return None  # collate_skip_failed removes and counts it
        for _ in range(self.max_replacements + 1):
            try:
                return self._load(i)
            except (VideoDecodeError, OSError) as err:
                self._report_failure(i, err, "replaced by a random other training video")
                i = int(torch.randint(len(self), ()).item())
        raise RuntimeError(f"{self.max_replacements + 1} videos in a row failed to decode; the "
                           "data is likely broken: list the bad videos with `python train.py --check` "
                           "(in Python: data.check(dataset))")

    def _report_failure(self, i, err, action):
        with self._num_failed.get_lock():
            self._num_failed.value += 1
        path = self.path(i)
        reason = str(err) if path in str(err) else f"{path}: {err}"
        warnings.warn(f"undecodable video ({reason}); {action}")

    def _load(self, i):
        label = self.samples[i][1]
        path = self.path(i)
        video = None if self._videos is None else self._videos[i]
        if isinstance(video, Exception):
            raise video
        # count_frames is cheap after the first call in this worker (packet index cache).
        n = count_frames(path) if video is None else len(video)
        if not self.eval_mode:
            # Random window start; a too-short video is centered and clamped instead.
            room = n - self.span
            start = int(torch.randint(room + 1, ()).item()) if room >= 0 else room // 2
            clips = [clip_indices(n, self.num_frames, self.frame_stride, start)]
        else:  # the same windows and views as eval_views(path), for a video of the dataset
            clips = eval_clip_indices(n, self.num_frames, self.frame_stride, self.num_clips)
        # One decode pass for all views; repeated indices are decoded once.
        indices = [j for clip in clips for j in clip]
        frames = decode_frames(path, indices) if video is None else video[indices]
        if not self.eval_mode:
            # (L, H, W, 3) -> (L, 3, H, W): torchvision's video layout, channels before pixels.
            # One call on the whole video: every frame gets the same crop and flip.
            clip = self.train_transform(tv_tensors.Video(frames.permute(0, 3, 1, 2)))
            return _to_cthw(clip), label
        views = _eval_views(frames, len(clips), self.size, self.num_crops)
        if len(views) == 1:
            return views[0], label
        return torch.stack(views), label  # (N * M, 3, L, S, S)


def _to_cthw(clip):
    # (L, 3, S, S) -> (3, L, S, S): the (C, L, H, W) layout video models take.
    return clip.as_subclass(torch.Tensor).permute(1, 0, 2, 3).contiguous()


class EvalBatch(NamedTuple):
    clips: torch.Tensor   # uint8 (B, 3, L, S, S) or (B, V, 3, L, S, S); None if all B failed
    labels: torch.Tensor  # int64 (B,); None if all failed
    num_failed: int       # undecodable videos left out of this batch


def collate_skip_failed(batch):
    """Eval collate: drop the None samples of undecodable videos and count them -> EvalBatch."""
    kept = [sample for sample in batch if sample is not None]
    if not kept:
        return EvalBatch(None, None, len(batch))
    clips, labels = default_collate(kept)
    return EvalBatch(clips, labels, len(batch) - len(kept))


def check(dataset, decode=True):
    """Scan every video of an HMDB51 dataset (or a Subset of one) -> [(path, problem)] for
    unreadable videos and for videos shorter than one clip (those are padded, not dropped, but you
    may want to know).

    decode=True also decodes each video's first and last frame (catches truncated files); False
    only demuxes (fast)."""
    indices = range(len(dataset))
    if isinstance(dataset, Subset):
        dataset, indices = dataset.dataset, dataset.indices
    problems = []
    for i in indices:
        path = dataset.path(i)
        try:
            n = count_frames(path)
            if decode:
                decode_frames(path, [0, n - 1])
        except (VideoDecodeError, OSError) as err:
            problems.append((path, f"unreadable: {err}"))
            continue
        if n < dataset.span:
            problems.append((path, f"too short: {n} frames, a clip spans {dataset.span} "
                                   "(its end frames will be repeated)"))
    return problems


# ----------------------------------------------------------------------------------------------
# Demo: python data.py [root]   (python synthetic.py writes a small set and runs this on it)
# ----------------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description="Read an HMDB51-layout dataset: splits, one clip, "
                                                 "multi-view evaluation, a scan for bad videos.")
    parser.add_argument("root", nargs="?", default="data/synthetic",
                        help="dataset root in the HMDB51 layout (default: data/synthetic)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.root):
        raise SystemExit(f"no dataset at {args.root!r}: write a small synthetic one with `python "
                         f"synthetic.py {args.root}`, or point to HMDB51 ({GETTING_HMDB51})")
    root = args.root
    for split in (1, 2, 3):
        n_train = len(read_split(os.path.join(root, SPLIT_DIRNAME), split, "train")[1])
        n_test = len(read_split(os.path.join(root, SPLIT_DIRNAME), split, "test")[1])
        print(f"split {split}: {n_train} train / {n_test} test videos")
    train = HMDB51(root, split=1, subset="train", num_frames=8, frame_stride=2, size=32)
    print(train)
    path = train.path(0)
    with av.open(path) as container:
        codec = container.streams.video[0].codec_context.name
    print(f"{train.samples[0][0]}: {codec}, {count_frames(path)} frames")
    frames = decode_frames(path, [0, 5, 10])
    print(f"decode_frames(path, [0, 5, 10]) -> {tuple(frames.shape)} {frames.dtype}")
    clip, label = train[0]
    print(f"train[0] -> clip {tuple(clip.shape)} {clip.dtype}, label {label} ({train.classes[label]})")
    views, label = HMDB51(root, subset="test", num_clips=2, num_crops=3)[0]
    print(f"test set, 2 clips x 3 crops -> views {tuple(views.shape)}")
    print(f"check(train set): {len(check(train))} problems")
    print(f"decoding so far: {dict(decode_stats)}")


if __name__ == "__main__":
    sys.exit(main())
