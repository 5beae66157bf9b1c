"""HMDB51 on disk -> uint8 clips: split files, exact PyAV decoding, the Dataset, a synthetic twin.

Reading guide
-------------
What this file implements: the data side of DESIGN.md section 3 (no paper equation lives here; the
paper evaluates on HMDB51 split 1 / the mean of splits 1-3 with clip and video accuracy).

1. Split files (`read_split`). The official layout after unpacking `hmdb51_org.rar` and
   `test_train_splits.rar` (README, "Getting HMDB51"):
       <root>/<class>/<video>.avi
       <root>/testTrainMulti_7030_splits/<class>_test_split<k>.txt    lines "<video>.avi <id>"
   id 1 = train, 2 = test, 0 = unused. The class name is the file name minus the exact suffix
   "_test_split<k>.txt" (never a glob: `climb` is a prefix of `climb_stairs`); class index =
   position in the sorted class list. Names are taken literally (spaces, `!`, `(`, `&`, `#`; no
   shell ever sees them); CRLF and trailing whitespace are stripped.
2. Decoding (`decode_frames`, `count_frames`). Frame k is *the k-th frame the decoder outputs when
   the file is decoded from its start*. We never sort by pts or find a frame by its pts: DivX
   "packed B-frame" AVIs carry pts swapped in pairs (DESIGN.md section 6). Instead one demux pass
   (no decoding, cached per file and process) lists the packets that carry data -> frame count,
   and the keyframes with their frame index. A clip then costs one seek to the last keyframe at or
   before its first frame, decoding up to its last frame, and an RGB conversion of kept frames only.
   Every assumption of that fast path is checked while it runs; if one fails we decode from the
   start, which is the definition itself.
3. `HMDB51` Dataset: indexes *videos* (one sample = one video; no decoding at construction).
   train: random temporal window (num_frames frames, frame_stride apart) + RandomResizedCrop +
   horizontal flip; test: centered window, short side -> `size`, center crop; multi-view test:
   num_clips uniformly spaced windows x num_crops crops along the long side -> (V, 3, T, S, S).
   Videos shorter than a window repeat their first/last frame (indices are clamped), never dropped.
   Returns uint8 `(3, T, S, S)` and an int label; models.py adapters convert and normalize.
4. Bad videos. Training: a video that fails to decode is reported with `warnings.warn` (naming the
   file), counted in `dataset.num_failed` (shared by all DataLoader workers), and replaced by a
   random other video, so an epoch never dies on one broken file. Evaluation excludes them: in
   eval mode `__getitem__` returns None for an undecodable video, and `collate_skip_failed` drops
   the Nones and counts them in the batch it returns, an `EvalBatch(clips, labels, num_failed)`:

       loader = DataLoader(test_set, batch_size=8, collate_fn=collate_skip_failed)
       excluded = 0
       for batch in loader:
           excluded += batch.num_failed   # summed per batch: right with workers and across ranks
           if batch.clips is None:        # every video of this batch failed
               continue
           logits = model(batch.clips)    # (B, 3, T, S, S), or (B, V, 3, T, S, S) with V views
           ...                            # report `excluded` next to the accuracy

   `check(dataset)` scans a dataset up front and lists unreadable and too-short videos.
5. `make_synthetic_hmdb51`: a "tiny HMDB51" written as real MPEG-4 Part 2 AVIs plus official-format
   split files, so the demo runs the same loader code as real data. Two discs on a cluttered
   background; 4 classes are defined by what one disc does locally (pulse, blink, orbit, zigzag),
   5 by how the discs move relative to each other while far apart (poke, sway, shear, follow,
   side_by_side): a small local CNN finds the second kind hard, global attention finds it easier.
   See `SYNTHETIC_ACTIONS` and the difficulty knobs of `make_synthetic_hmdb51`.

Note: torchvision >= 0.26 dropped PyAV video reading (DESIGN.md section 6), hence our own decoder.
Left out on purpose: audio, variable frame rates (frames are counted, not timed), GPU decoding,
caching decoded frames (a clip is cheap enough to decode on the fly; DataLoader workers give the
parallelism). `make_fake_hmdb51_layout` and `measure_loader` are small helpers for benchmarks.
"""
import argparse
import bisect
import functools
import inspect
import itertools
import json
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections import Counter
from typing import NamedTuple

import av
from av.video.reformatter import VideoReformatter
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, default_collate
from torchvision import tv_tensors
from torchvision.transforms import v2

SPLIT_DIRNAME = "testTrainMulti_7030_splits"
SPLIT_IDS = {"1": "train", "2": "test", "0": "unused"}
GETTING_HMDB51 = 'see the section "Getting HMDB51" in README.md for how to download and unpack it'
LAYOUT = (f"<root>/<class>/<video>.avi and <root>/{SPLIT_DIRNAME}/<class>_test_split<k>.txt "
          "(or pass the two folders separately as video_dir / split_dir)")


# ----------------------------------------------------------------------------------------------
# 1. Split files
# ----------------------------------------------------------------------------------------------

def read_split(split_dir, split=1, train=True):
    """Parse the official split files -> (classes, samples).

    classes: sorted class names; samples: [("<class>/<video>.avi", class index)] for the videos
    with id 1 (train=True) or 2 (train=False), in file order within each class.
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
    wanted_id = "1" if train else "2"
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
# 2. Exact frame access with PyAV
# ----------------------------------------------------------------------------------------------

class VideoDecodeError(RuntimeError):
    """A video that cannot be opened, has no video frames, or decodes fewer frames than asked."""


class SeekPoint(NamedTuple):
    frame: int  # index of the keyframe's picture in decoder output order
    dts: int    # identifies the keyframe's packet after a seek
    pts: int    # identifies its picture among the decoder's outputs


class PacketIndex(NamedTuple):
    num_frames: int
    seek_points: tuple  # SeekPoints sorted by frame; frame 0 is always reached from the file start


# Counts of how clips were decoded ("seek", "from_start", "fallback") and of frames decoded and
# kept, per process: tests use it to prove we decode only what a clip needs; bench code may read it.
decode_stats = Counter()


def _open_video(path):
    """Open `path` -> (container, its first video stream) or raise VideoDecodeError."""
    try:
        container = av.open(os.fspath(path))
    except (av.error.FFmpegError, OSError) as err:
        raise VideoDecodeError(f"cannot open {path}: {err}") from err
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{path} has no video stream")
    stream = container.streams.video[0]
    # Note: one decoder thread. Parallelism comes from DataLoader workers (DESIGN.md section 6
    # found threading no faster at 320x240), and N workers x N threads would oversubscribe the CPU.
    stream.codec_context.thread_count = 1
    return container, stream


@functools.lru_cache(maxsize=16384)
def _packet_index(path, mtime_ns, size):
    # mtime_ns and size are in the key so that a file rewritten in place is re-indexed.
    container, stream = _open_video(path)
    packets = []  # (pts, dts, is_keyframe, number of MPEG-4 pictures in it) in file (decode) order
    try:
        for packet in container.demux(stream):
            # Empty packets are AVI padding chunks (and PyAV's end-of-file marker): no picture.
            # Discard-flagged ones (MP4 edit lists cutting the start) decode to hidden pictures.
            if packet.size == 0 or packet.is_discard:
                continue
            pictures = 1
            if packet.is_keyframe and stream.codec_context.name == "mpeg4":
                # A DivX "packed" chunk can hold an I-VOP *and* the B-VOP shown before it; its own
                # position is then not the I-frame's output index, so it is no seek point.
                pictures = bytes(packet).count(b"\x00\x00\x01\xb6")
            packets.append((packet.pts, packet.dts, packet.is_keyframe, pictures))
    except av.error.FFmpegError as err:
        raise VideoDecodeError(f"cannot demux {path}: {err}") from err
    finally:
        container.close()
    if not packets:
        raise VideoDecodeError(f"{path} holds no video frames")
    # A keyframe's output index = how many pictures are shown before it. With reliable pts (MP4;
    # AVI whose pts the MPEG-4 parser fills) that is the rank of its pts: open GOPs put B-frames
    # shown *before* an I-frame *after* it in the file. Packed AVIs carry monotonic packet pts, so
    # the rank equals the chunk position there, which is right for their (single-picture) I chunks.
    all_pts = [p[0] for p in packets]
    have_pts = all(pts is not None for pts in all_pts)
    sorted_pts = sorted(all_pts) if have_pts else None
    seek_points = []
    for position, (pts, dts, key, pictures) in enumerate(packets):
        if not key or pictures != 1 or dts is None or pts is None:
            continue
        frame = bisect.bisect_left(sorted_pts, pts) if have_pts else position
        if frame > 0:
            seek_points.append(SeekPoint(frame, dts, pts))
    seek_points.sort()
    return PacketIndex(len(packets), tuple(seek_points))


def packet_index(path):
    """Demux `path` once (no decoding) -> PacketIndex; cached per file and process."""
    st = os.stat(path)
    return _packet_index(os.fspath(path), st.st_mtime_ns, st.st_size)


def count_frames(path):
    """Number of frames the file decodes to: one per packet that carries data (the AVI header's
    frame count can be far off: DESIGN.md section 6 has a file that claims 444 and holds 68)."""
    return packet_index(path).num_frames


_rgb_converter = {}  # {process id: VideoReformatter}
# PyAV >= 17 scales with a thread pool unless told otherwise; older versions have no such option.
_ONE_THREAD = {"threads": 1} if int(av.__version__.split(".")[0]) >= 17 else {}


def _to_rgb(frame):
    """Frame -> (H, W, 3) uint8. A reused converter keeps its swscale context between frames of one
    size: 2-4x faster than frame.to_ndarray(format="rgb24"), which builds a new one per frame.
    Note: one converter per process, made in that process, and one thread (parallelism comes from
    DataLoader workers): with swscale's default thread pool, a converter made before a fork hangs
    in the forked DataLoader workers."""
    converter = _rgb_converter.get(os.getpid())
    if converter is None:
        _rgb_converter.clear()
        converter = _rgb_converter[os.getpid()] = VideoReformatter()
    return converter.reformat(frame, format="rgb24", **_ONE_THREAD).to_ndarray()


class _SeekMismatch(Exception):
    """The container did not land where the packet index says; decode from the start instead."""


def _data_packets(container, stream):
    # Empty packets carry no picture (PyAV's end-of-file marker among them); the final None drains
    # the pictures the decoder holds back for reordering.
    for packet in container.demux(stream):
        if packet.size:
            yield packet
    yield None


def _seek_to(container, stream, seek):
    """Seek so that the next data packet is the keyframe `seek` -> that packet. Containers index
    keyframes by different clocks (AVI by dts, i.e. chunk number; MP4 by pts), so try both."""
    for target in (seek.dts, seek.pts):
        container.seek(target, stream=stream, backward=True, any_frame=False)
        packet = next(_data_packets(container, stream))
        if packet is not None and packet.dts == seek.dts:
            stream.codec_context.flush_buffers()
            return packet
    raise _SeekMismatch


def _pictures(container, stream, seek):
    """Yield (output index, frame) for the pictures the decoder outputs from SeekPoint `seek` on
    (None: from the file start, where output index = output count by definition)."""
    if seek is None:
        position, anchor_pts, packets = 0, None, _data_packets(container, stream)
    else:
        # Prime the decoder with the file's first packet: some streams state things only there
        # that change how later packets decode. A DivX file says "my B-frames are packed" once,
        # in the user data of its first frame; a decoder that never saw it silently drops every
        # B-frame after a seek. The flush in _seek_to discards the primed picture.
        stream.codec_context.decode(next(_data_packets(container, stream)))
        first = _seek_to(container, stream, seek)
        position = None  # unknown until the keyframe's own picture comes out
        anchor_pts = first.pts
        packets = itertools.chain([first], _data_packets(container, stream))
    skipped = 0
    for packet in packets:
        for frame in stream.codec_context.decode(packet):
            decode_stats["decoded_frames"] += 1
            known = anchor_pts is not None and frame.pts is not None
            if position is None:
                # Pictures shown before the keyframe (leading B-frames of an open GOP) may come
                # out first, or be dropped: wait for the keyframe's own picture.
                if known and frame.pts != anchor_pts:
                    skipped += 1
                    if skipped > 64:
                        raise _SeekMismatch
                    continue
                position = seek.frame
            elif known and frame.pts < anchor_pts:
                continue  # a leading picture that comes out late: the full decode shows it earlier
            yield position, frame
            position += 1


def _decode_from(path, wanted, seek):
    """Pictures `wanted` (sorted unique output indices), decoding from SeekPoint `seek` (None: the
    file start) -> {index: (H, W, 3) uint8 array}, or None if the seek went wrong."""
    wanted_set, last = set(wanted), wanted[-1]
    out = {}
    container, stream = _open_video(path)
    try:
        for position, frame in _pictures(container, stream, seek):
            if position in wanted_set:
                # Only kept pictures pay for the RGB conversion, the costly step.
                out[position] = _to_rgb(frame)
                decode_stats["kept_frames"] += 1
            if position == last:
                return out  # stop decoding as soon as the clip is complete
        raise VideoDecodeError(f"{path}: the decoder stopped before frame {last}, although the "
                               "file has a packet for it")
    except _SeekMismatch:
        return None
    except av.error.FFmpegError as err:
        raise VideoDecodeError(f"cannot decode {path}: {err}") from err
    finally:
        container.close()


def decode_frames(path, indices):
    """Frames at output positions `indices` (0-based, any order, repeats allowed) ->
    uint8 tensor (len(indices), H, W, 3). Position k is the k-th frame the decoder outputs when the
    file is decoded from its start (presentation order; never "sorted by pts")."""
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError("decode_frames needs at least one frame index")
    if min(indices) < 0:
        raise ValueError(f"frame indices must be >= 0, got {min(indices)}")
    index = packet_index(path)
    wanted = sorted(set(indices))
    if wanted[-1] >= index.num_frames:
        raise VideoDecodeError(f"{path} has {index.num_frames} frames, frame {wanted[-1]} "
                               "requested")
    # The last keyframe at or before the first wanted frame (frame 0 needs no seek).
    k = bisect.bisect_right([sp.frame for sp in index.seek_points], wanted[0]) - 1
    seek = index.seek_points[k] if k >= 0 else None
    frames = _decode_from(path, wanted, seek)
    if frames is None:
        decode_stats["fallback"] += 1
        frames = _decode_from(path, wanted, None)
    else:
        decode_stats["seek" if seek is not None else "from_start"] += 1
    return torch.from_numpy(np.stack([frames[i] for i in indices]))


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


class HMDB51(Dataset):
    """HMDB51 (or the synthetic twin) as a Dataset of videos -> (uint8 (3, T, S, S), int label).

    train selects the videos (id 1 or 2 of the split); eval_mode (default: not train) the sampling.
    Training sampling: random window + RandomResizedCrop(size, crop_scale) + horizontal flip.
    Eval sampling: num_clips x num_crops deterministic views; with one view the clip is
    (3, T, S, S), else (num_clips * num_crops, 3, T, S, S), clip-major (the centered clip's center
    crop is view (num_clips // 2) * num_crops + num_crops // 2). Undecodable videos: see the
    module docstring.
    """

    def __init__(self, root=None, split=1, train=True, num_frames=8, frame_stride=2, size=32,
                 video_dir=None, split_dir=None, num_clips=1, num_crops=1, skip_missing=False,
                 eval_mode=None, crop_scale=(0.5, 1.0), hflip=True, max_replacements=50):
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
        self.eval_mode = (not train) if eval_mode is None else eval_mode
        if not self.eval_mode and (num_clips != 1 or num_crops != 1):
            raise ValueError("multi-view sampling (num_clips, num_crops) is for evaluation only")
        self.split, self.train = split, train
        self.num_frames, self.frame_stride, self.size = num_frames, frame_stride, size
        self.num_clips, self.num_crops = num_clips, num_crops
        self.max_replacements = max_replacements
        self.classes, samples = read_split(self.split_dir, split, train)
        self.num_classes = len(self.classes)

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
                f"per-class archives ({GETTING_HMDB51}), or pass skip_missing=True to leave "
                "them out")
        if missing:
            warnings.warn(f"skipping {len(missing)} videos listed in the split files but missing "
                          f"under {self.video_dir}, e.g. {missing[:3]}")
            gone = set(missing)
            samples = [s for s in samples if s[0] not in gone]
        self.num_missing = len(missing)
        self.samples = samples

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

    def __len__(self):
        return len(self.samples)

    def __repr__(self):
        mode = "train" if self.train else "test"
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
                           "data is likely broken: list the bad videos with data.check(dataset)")

    def _report_failure(self, i, err, action):
        with self._num_failed.get_lock():
            self._num_failed.value += 1
        path = self.path(i)
        reason = str(err) if path in str(err) else f"{path}: {err}"
        warnings.warn(f"undecodable video ({reason}); {action}")

    def _load(self, i):
        label = self.samples[i][1]
        path = self.path(i)
        n = count_frames(path)  # cheap after the first call in this worker (packet index cache)
        if not self.eval_mode:
            # Random window start; a too-short video is centered and clamped instead.
            room = n - self.span
            start = int(torch.randint(room + 1, ()).item()) if room >= 0 else room // 2
            starts = [start]
        else:
            starts = uniform_starts(n, self.span, self.num_clips)
        clips = [clip_indices(n, self.num_frames, self.frame_stride, s) for s in starts]
        # One decode pass for all views; repeated indices are decoded once.
        frames = decode_frames(path, [j for clip in clips for j in clip])
        frames = frames.view(len(clips), self.num_frames, *frames.shape[1:])
        # (N, T, H, W, 3) -> (N, T, 3, H, W): torchvision's video layout, channels before pixels.
        frames = frames.permute(0, 1, 4, 2, 3)
        if not self.eval_mode:
            # One call on the whole (T, 3, H, W) video: every frame gets the same crop and flip.
            clip = self.train_transform(tv_tensors.Video(frames[0]))
            return _to_cthw(clip), label
        views = [_to_cthw(view) for clip in frames for view in self._test_views(clip)]
        if len(views) == 1:
            return views[0], label
        return torch.stack(views), label  # (N * M, 3, T, S, S)

    def _test_views(self, clip):
        """(T, 3, H, W) -> num_crops views (T, 3, S, S): short side resized to S, then crops spread
        along the long side (one crop: the center)."""
        clip = v2.functional.resize(tv_tensors.Video(clip), self.size, antialias=True)
        T, C, H, W = clip.shape
        S, M = self.size, self.num_crops
        long_room = max(H, W) - S
        # Floor division keeps the middle of an odd number of crops on the center crop.
        offsets = [long_room // 2] if M == 1 else [i * long_room // (M - 1) for i in range(M)]
        views = []
        for off in offsets:
            top, left = ((H - S) // 2, off) if W >= H else (off, (W - S) // 2)
            views.append(v2.functional.crop(clip, top, left, S, S))
        return views


def _to_cthw(clip):
    # (T, 3, S, S) -> (3, T, S, S): the (C, T, H, W) layout video models take (DESIGN.md sec. 3).
    return clip.as_subclass(torch.Tensor).permute(1, 0, 2, 3).contiguous()


class EvalBatch(NamedTuple):
    clips: torch.Tensor   # uint8 (B, 3, T, S, S) or (B, V, 3, T, S, S); None if all B failed
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
# 4. Synthetic "tiny HMDB51"
# ----------------------------------------------------------------------------------------------

# Every video shows two discs over a cluttered, textured background; one or both of them move.
# local: one disc does something you can see in a small neighbourhood; the other one sits still.
# relational: seen alone, each disc just swings back and forth along some axis; the class is that
#   axis and the swing's phase *relative to the other disc*, which is far away (at least
#   min_distance of the frame). A small CNN that pools local motion features cannot tell these
#   classes apart within a group; attention over the whole frame can.
# Why swings and not straight paths: a straight path fast enough to dominate the noise (DESIGN.md
# section 8: ~2 px per clip frame) leaves a 48-px frame within one clip; a swing stays in place.
# All classes are invariant to a horizontal flip (axes and directions are drawn uniformly), so flip
# augmentation never changes a label; none is defined by the direction of time either.
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


def _unit(angle):
    return np.array([math.cos(angle), math.sin(angle)], np.float32)


def synthetic_layout(action, rng, num_frames, width, height, min_distance=0.35,
                     amplitude=(0.1, 0.15), period=(8, 14), radius=(0.09, 0.13)):
    """Where the two discs are in each frame of one video of `action` -> (p, r, alpha):
    centers (2, T, xy) in pixels, radii (2, T), opacities (2, T). Lengths are fractions of the
    short side S and the discs stay inside the central S x S square (what the test center crop
    keeps), so any frame size poses the same task; periods are in frames."""
    S = min(width, height)
    t = np.arange(num_frames, dtype=np.float32)
    kind = SYNTHETIC_ACTIONS[action][0]

    # Draw a configuration until it fits into the square. p: (2 discs, T, xy) centers, disc 0 is
    # the actor; r: (2, T) radii; alpha: (2, T) opacity.
    for _attempt in range(1000):
        r = np.repeat(rng.uniform(*radius, size=(2, 1)) * S, num_frames, axis=1)  # nuisance: size
        alpha = np.ones((2, num_frames), np.float32)
        p = np.zeros((2, num_frames, 2), np.float32)
        u = _unit(rng.uniform(0, 2 * math.pi))  # the line from disc 0 to disc 1 (nuisance)
        n = np.array([-u[1], u[0]])            # across that line
        A = rng.uniform(*amplitude) * S        # swing amplitude (nuisance: speed and extent)
        wave = np.sin(2 * math.pi * t / rng.uniform(*period) + rng.uniform(0, 2 * math.pi))
        swing = A * wave[:, None]              # (T, 1) signed offset along an axis
        # Centers this far apart at rest keep them >= min_distance apart at every moment (only
        # "poke" brings them closer, by A).
        gap = (min_distance + rng.uniform(0, 0.08)) * S + (A if action == "poke" else 0)
        if action == "pulse":
            r[0] *= 1 + 0.35 * wave
        elif action == "blink":
            alpha[0] = 0.5 * (1 + wave)
        elif action == "orbit":
            turns = rng.choice([-1.0, 1.0]) * t / rng.uniform(period[0] + 2, period[1] + 2)
            angle = 2 * math.pi * turns + rng.uniform(0, 2 * math.pi)
            p[0] = 1.2 * A * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        elif action == "zigzag":
            drift = rng.uniform(2.0, 3.0) * A * t / max(num_frames - 1, 1)
            p[0] = np.outer(drift, u) + swing * n
        else:  # relational: disc 1 rests at `gap` along u
            axis = u if action in ("poke", "follow") else n
            p[0] = swing * axis
            p[1] = gap * u
            if action == "shear":
                p[1] -= swing * axis  # opposite phase
            elif action in ("follow", "side_by_side"):
                p[1] += swing * axis  # in step
        if kind == "local":
            # The still distractor, at least `gap` away from every position of the actor.
            reach = np.linalg.norm(p[0] - p[0].mean(axis=0), axis=1).max()
            p[1] = p[0].mean(axis=0) + _unit(rng.uniform(0, 2 * math.pi)) * (reach + gap)
        if rng.random() < 0.5:
            p = p[::-1].copy()  # which disc is the actor is no cue either
            r, alpha = r[::-1].copy(), alpha[::-1].copy()
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
                    **layout):
    """Render one video of `action` -> uint8 (num_frames, height, width, 3); `layout` goes to
    synthetic_layout."""
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
            dist = np.sqrt((xx - p[d, f, 0]) ** 2 + (yy - p[d, f, 1]) ** 2)
            cover = (np.clip(r[d, f] + 0.5 - dist, 0, 1) * alpha[d, f])[..., None]
            img = img * (1 - cover) + colours[d] * cover
        img += rng.standard_normal(img.shape, dtype=np.float32) * noise  # per-frame noise
        frames[f] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return frames


def write_video(path, frames, fps=30, max_b_frames=2, gop_size=12):
    """uint8 (T, H, W, 3) -> MPEG-4 Part 2 (the codec of HMDB51's XviD/DivX files) in AVI, with
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


def make_synthetic_hmdb51(root, num_classes=9, videos_per_class=150, num_frames=20, width=64,
                          height=48, fps=30, noise=0.02, clutter=2, texture=0.03,
                          min_distance=0.35, amplitude=(0.1, 0.15), period=(8, 14),
                          radius=(0.09, 0.13),
                          train_fraction=0.7, seed=0):
    """Write a synthetic HMDB51 (videos + 3 official-format splits) into `root` -> root.

    Deterministic in `seed` (each video has its own generator, so changing num_classes or
    videos_per_class leaves the other videos as they were). Defaults: 9 classes x 150 videos of
    20 frames at 64x48 -> 945 train / 405 test videos per split (a ViT trained from scratch needs
    the data), ~30 MB, ~10 s on one core. The
    tiny preset reads 8 frames at stride 2 (15 of the 20) and 32x32 crops of them.
    Sizes: num_classes (first classes of SYNTHETIC_ACTIONS, whose order alternates local and
    relational so every prefix keeps both kinds), videos_per_class, num_frames, width, height, fps.
    Difficulty knobs, with their defaults (the benchmark tunes these):
      noise=0.02          std of the per-frame Gaussian pixel noise, in [0, 1] intensity units
                          (DESIGN.md section 8: 0.08 drowned the motion of small discs)
      clutter=2           static rectangles of random colour in the background
      texture=0.03        amplitude of the smooth background texture
      min_distance=0.35   closest the two disc centers ever get, in units of the short side S
      amplitude=(0.1, 0.15), period=(8, 14)   swings: range of amplitude (x S) and period
                          (frames); peak speed 2 pi A / period ~ 2 px per frame at 64x48
      radius=(0.09, 0.13) disc radius range (x S)
    At the defaults every relational configuration fits the frame at the first draw, so no
    relational class prefers a direction (orbit and zigzag redraw ~12% / ~19% of the time, which
    only moves their distractor disc); raising min_distance or amplitude makes more draws retry and
    can bias the directions of the classes whose discs line up (poke, follow).
    """
    names = list(SYNTHETIC_ACTIONS)[:num_classes]
    if num_classes < 2 or len(names) < num_classes:
        raise ValueError(f"num_classes must be 2..{len(SYNTHETIC_ACTIONS)}, got {num_classes}")
    if width % 2 or height % 2:
        raise ValueError(f"width and height must be even (yuv420p), got {width}x{height}")
    os.makedirs(root, exist_ok=True)
    names_by_class = {}
    for action in sorted(names):
        os.makedirs(os.path.join(root, action), exist_ok=True)
        names_by_class[action] = []
        for v in range(videos_per_class):
            # One generator per video: a video does not change when other sizes change.
            rng = np.random.default_rng([seed, names.index(action), v])
            frames = synthetic_video(action, rng, num_frames, width, height, noise, clutter,
                                     texture, min_distance=min_distance, amplitude=amplitude,
                                     period=period, radius=radius)
            name = f"tiny_{action}_v{v:03d}.avi"
            write_video(os.path.join(root, action, name), frames, fps=fps)
            names_by_class[action].append(name)
    _write_splits(os.path.join(root, SPLIT_DIRNAME), names_by_class, seed, train_fraction)
    settings = dict(num_classes=num_classes, videos_per_class=videos_per_class,
                    num_frames=num_frames, width=width, height=height, fps=fps, noise=noise,
                    clutter=clutter, texture=texture, min_distance=min_distance,
                    amplitude=amplitude, period=period, radius=radius,
                    train_fraction=train_fraction, seed=seed)
    # Written last: its presence means the set is complete (ensure_synthetic_hmdb51 relies on it).
    with open(os.path.join(root, SYNTHETIC_INFO), "w") as f:
        json.dump({"settings": _jsonable(settings),
                   "classes": {a: SYNTHETIC_ACTIONS[a] for a in names}}, f, indent=1)
    return root


SYNTHETIC_INFO = "synthetic_hmdb51.json"


def _jsonable(settings):
    # Tuples become lists in JSON; compare like with like.
    return json.loads(json.dumps(settings))


def ensure_synthetic_hmdb51(root, **settings):
    """make_synthetic_hmdb51(root, **settings) unless `root` already holds exactly that set -> root.

    The settings (defaults filled in) are compared with the SYNTHETIC_INFO file the generator
    writes last, so an interrupted or differently made set is rewritten. Only what the generator
    makes is removed; a folder holding anything else is refused."""
    bound = inspect.signature(make_synthetic_hmdb51).bind(root, **settings)
    bound.apply_defaults()
    wanted = _jsonable({k: v for k, v in bound.arguments.items() if k != "root"})
    info = os.path.join(root, SYNTHETIC_INFO)
    if os.path.isfile(info):
        with open(info) as f:
            if json.load(f).get("settings") == wanted:
                return root
    if os.path.isdir(root):
        ours = set(SYNTHETIC_ACTIONS) | {SPLIT_DIRNAME, SYNTHETIC_INFO}
        foreign = sorted(set(os.listdir(root)) - ours)
        if foreign:
            raise FileExistsError(f"{root} is not a synthetic HMDB51 folder (it holds "
                                  f"{foreign[:3]}); choose another folder for the synthetic set")
        for name in os.listdir(root):
            path = os.path.join(root, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
    return make_synthetic_hmdb51(root, **settings)


# ----------------------------------------------------------------------------------------------
# 5. Helpers for benchmarks
# ----------------------------------------------------------------------------------------------

HMDB51_CLASSES = (
    "brush_hair cartwheel catch chew clap climb climb_stairs dive draw_sword dribble drink eat "
    "fall_floor fencing flic_flac golf handstand hit hug jump kick kick_ball kiss laugh pick pour "
    "pullup punch push pushup ride_bike ride_horse run shake_hands shoot_ball shoot_bow shoot_gun "
    "sit situp smile smoke somersault stand swing_baseball sword sword_exercise talk throw turn "
    "walk wave").split()


def make_fake_hmdb51_layout(root, num_videos=6766):
    """The full HMDB51 layout (51 real class names, 3 x 51 split files, 70 train / 30 test per
    class and split, the rest unused) with *empty* video files: for timing dataset construction,
    which must not decode anything. Names contain the awkward characters real ones have."""
    split_dir = os.path.join(root, SPLIT_DIRNAME)
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

    def batches():
        while True:
            yield from loader

    it = batches()
    next(it)
    start, clips = time.perf_counter(), 0
    for _ in range(num_batches):
        clips += len(next(it)[1])
    return clips / (time.perf_counter() - start)


# ----------------------------------------------------------------------------------------------
# Demo: python data.py [folder]
# ----------------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description="Write a small synthetic HMDB51 and read it back.")
    parser.add_argument("folder", nargs="?", default=None,
                        help="where to write it (default: a temporary folder, deleted afterwards)")
    parser.add_argument("--videos-per-class", type=int, default=10,
                        help="videos per class (default: 10; make_synthetic_hmdb51 uses 100)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.folder or os.path.join(tmp, "tiny_hmdb51")
        start = time.perf_counter()
        make_synthetic_hmdb51(root, videos_per_class=args.videos_per_class)
        print(f"wrote a synthetic HMDB51 to {root} in {time.perf_counter() - start:.1f} s")
        for name, (kind, what) in SYNTHETIC_ACTIONS.items():
            print(f"  {name:13s} {kind:10s} {what}")

        for split in (1, 2, 3):
            n_train = len(read_split(os.path.join(root, SPLIT_DIRNAME), split, train=True)[1])
            n_test = len(read_split(os.path.join(root, SPLIT_DIRNAME), split, train=False)[1])
            print(f"split {split}: {n_train} train / {n_test} test videos")

        train = HMDB51(root, split=1, train=True, num_frames=8, frame_stride=2, size=32)
        print(train)
        path = train.path(0)
        with av.open(path) as container:
            codec = container.streams.video[0].codec_context.name
        print(f"{train.samples[0][0]}: {codec} in AVI, {count_frames(path)} frames")
        frames = decode_frames(path, [0, 5, 10])
        print(f"decode_frames(path, [0, 5, 10]) -> {tuple(frames.shape)} {frames.dtype}")
        clip, label = train[0]
        print(f"train[0] -> clip {tuple(clip.shape)} {clip.dtype}, label {label} "
              f"({train.classes[label]})")
        views, label = HMDB51(root, train=False, num_clips=2, num_crops=3)[0]
        print(f"test set, 2 clips x 3 crops -> views {tuple(views.shape)}")
        print(f"check(train set): {len(check(train))} problems")
        print(f"decoding so far: {dict(decode_stats)}")


if __name__ == "__main__":
    sys.exit(main())
