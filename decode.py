"""Exact frame access with PyAV: frame k of a video is the k-th picture its decoder outputs.

Reading guide
-------------
No paper equation lives here; this is what makes a clip's frames the frames you asked for.

Definition. Frame k is *the k-th frame the decoder outputs when the file is decoded from its
start* (presentation order). We never sort frames by pts and never find a frame by its pts alone:
  - DivX "packed B-frame" AVIs (common among HMDB51-era files) hand out the pictures in the right
    order but with pts swapped in pairs (1, 2, 3, 5, 4, 6, 8, 7, ...); sorting by pts puts most
    frames in the wrong place (tests/test_decode.py builds such a file by bitstream surgery);
  - in AVI the first pts can be 1, not 0, and B-frames make a seek land after its target unless
    it starts a few frames early;
  - headers lie: the frame count an AVI claims can be far from what it decodes.

Method. One demux pass per file (no decoding; cached per file and process, keyed by size and
mtime so a rewritten file is re-indexed) lists the packets that carry data -> the frame count,
and the keyframes with their frame index (`packet_index`). A clip then costs one seek to the last
keyframe at or before its first frame, decoding up to its last frame, and an RGB conversion of
the kept frames only. Every assumption of that fast path is checked while it runs; if one fails
we decode from the start, which is the definition itself (`decode_stats` counts which path ran).

Public: `decode_frames(path, indices) -> uint8 (len(indices), H, W, 3)`, `count_frames(path)`,
`packet_index(path)`, `VideoDecodeError`.
Note: torchvision >= 0.26 no longer decodes video with PyAV, hence our own decoder.
Left out on purpose: audio, variable frame rates (frames are counted, not timed), GPU decoding.
"""
import bisect
import functools
import itertools
import os
from collections import Counter
from typing import NamedTuple

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter


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
    # Note: one decoder thread. Parallelism comes from DataLoader workers (threaded decoding was no
    # faster at HMDB51's 320x240), and N workers x N threads would oversubscribe the CPU.
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
    frame count can be far off: a real cinepak AVI claims 444 frames and decodes 68)."""
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
