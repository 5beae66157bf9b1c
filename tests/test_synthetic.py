"""Executable specification of synthetic.py: the layout, determinism and the class geometry."""
import inspect
import os

import av
import numpy as np
import pytest
import torch

import data
import decode
import synthetic


def test_synthetic_layout_is_official_and_splits_are_50_50_and_differ(tiny):
    split_dir = os.path.join(tiny, data.SPLIT_DIRNAME)
    assert len(os.listdir(split_dir)) == 9 * 3
    per_split = []
    for k in (1, 2, 3):
        classes, train = data.read_split(split_dir, k, "train")
        _, test = data.read_split(split_dir, k, "test")
        for c in range(len(classes)):  # 6 videos -> 3 train, 3 test in every class
            assert sum(l == c for _, l in train) == 3 and sum(l == c for _, l in test) == 3
        per_split.append(set(r for r, _ in train))
    assert per_split[0] != per_split[1] != per_split[2]
    with av.open(os.path.join(tiny, "pulse", "tiny_pulse_v000.avi")) as container:
        assert container.format.name == "avi"
        assert container.streams.video[0].codec_context.name == "mpeg4"


def test_synthetic_is_deterministic_in_the_seed(tmp_path):
    a = synthetic.make_synthetic_hmdb51(str(tmp_path / "a"), num_classes=2, videos_per_class=2)
    b = synthetic.make_synthetic_hmdb51(str(tmp_path / "b"), num_classes=2, videos_per_class=2)
    c = synthetic.make_synthetic_hmdb51(str(tmp_path / "c"), num_classes=2, videos_per_class=2, seed=1)
    rel = os.path.join("poke", "tiny_poke_v001.avi")
    frames = [decode.decode_frames(os.path.join(r, rel), range(20)) for r in (a, b, c)]
    assert torch.equal(frames[0], frames[1]) and not torch.equal(frames[0], frames[2])
    # A video does not depend on how many others are generated.
    d = synthetic.make_synthetic_hmdb51(str(tmp_path / "d"), num_classes=3, videos_per_class=3)
    assert torch.equal(frames[0], decode.decode_frames(os.path.join(d, rel), range(20)))


def test_writer_processes_write_the_very_files_one_process_writes(tmp_path, monkeypatch):
    serial = synthetic.make_synthetic_hmdb51(str(tmp_path / "serial"), num_classes=3, videos_per_class=4)
    monkeypatch.setattr(synthetic, "PARALLEL_FROM", 0)  # use processes even for 12 videos
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    pooled = synthetic.make_synthetic_hmdb51(str(tmp_path / "pooled"), num_classes=3, videos_per_class=4)
    files = sorted(os.path.relpath(os.path.join(d, f), serial) for d, _, fs in os.walk(serial) for f in fs)
    assert len(files) == 3 * 4 + 3 * 3 + 1  # videos, 3 split files per class, the info file
    for rel in files:
        with open(os.path.join(serial, rel), "rb") as a, open(os.path.join(pooled, rel), "rb") as b:
            assert a.read() == b.read(), rel


def test_ensure_synthetic_writes_once_and_rewrites_on_other_settings(tmp_path):
    root = str(tmp_path / "syn")
    synthetic.ensure_synthetic_hmdb51(root, num_classes=2, videos_per_class=2)
    info = os.path.join(root, synthetic.SYNTHETIC_INFO)
    stamp = os.stat(info).st_mtime_ns
    synthetic.ensure_synthetic_hmdb51(root, num_classes=2, videos_per_class=2)  # same: kept
    assert os.stat(info).st_mtime_ns == stamp
    synthetic.ensure_synthetic_hmdb51(root, num_classes=3, videos_per_class=1)  # other: rewritten
    classes, train = data.read_split(os.path.join(root, data.SPLIT_DIRNAME), 1, "train")
    assert len(classes) == 3 and len(os.listdir(os.path.join(root, "pulse"))) == 1
    os.remove(info)  # as if interrupted before the end: rewritten
    synthetic.ensure_synthetic_hmdb51(root, num_classes=3, videos_per_class=1)
    assert os.path.isfile(info)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="thesis.tex"):
        synthetic.ensure_synthetic_hmdb51(str(tmp_path / "mine"))


def test_synthetic_classes_mix_local_and_relational():
    kinds = [kind for kind, _ in synthetic.SYNTHETIC_ACTIONS.values()]
    assert len(kinds) >= 8
    for n in range(3, len(kinds) + 1):  # any prefix (num_classes) keeps >= a third relational
        assert kinds[:n].count("relational") >= n / 3


@pytest.mark.parametrize("action", list(synthetic.SYNTHETIC_ACTIONS))
def test_synthetic_geometry_matches_the_class_definition(action):
    W, H, T = 64, 48, 20
    S = min(W, H)
    for seed in range(10):
        p, r, alpha = synthetic.synthetic_layout(action, np.random.default_rng(seed), T, W, H)
        # Both discs stay inside the central square (what the test center crop keeps) ...
        assert (p[..., 0] - r >= (W - S) / 2).all() and (p[..., 0] + r <= (W + S) / 2).all()
        assert (p[..., 1] - r >= 0).all() and (p[..., 1] + r <= H).all()
        # ... and far apart at every moment.
        min_distance = inspect.signature(synthetic.synthetic_layout).parameters["min_distance"].default
        assert (np.linalg.norm(p[0] - p[1], axis=1) >= min_distance * S - 1e-3).all()
        moving = [np.ptp(p[d], axis=0).max() > 1 or np.ptp(r[d]) > 0.5 or np.ptp(alpha[d]) > 0.5
                  for d in range(2)]
        kind = synthetic.SYNTHETIC_ACTIONS[action][0]
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


def test_demo_runs(tmp_path, capsys):
    synthetic.main([str(tmp_path / "demo"), "--videos-per-class", "3"])
    out = capsys.readouterr().out
    # 3 videos x train_fraction 0.444 -> 1 training video per class
    assert "split 1: 9 train / 18 test videos" in out and "(3, 8, 32, 32)" in out
    assert "views (6, 3, 8, 32, 32)" in out


def test_kinetics_corpus_has_36_classes_in_the_hmdb51_layout_and_is_deterministic(tmp_path):
    a = synthetic.make_synthetic_kinetics(str(tmp_path / "a"), videos_per_class=5)
    b = synthetic.make_synthetic_kinetics(str(tmp_path / "b"), videos_per_class=2)
    classes, train = data.read_split(os.path.join(a, data.SPLIT_DIRNAME), 1, "train")
    _, test = data.read_split(os.path.join(a, data.SPLIT_DIRNAME), 1, "test")
    assert classes == sorted(synthetic.corpus_classes()) and len(classes) == 36
    assert (len(train), len(test)) == (36 * 4, 36 * 1)  # 80 / 20 per class
    rel = os.path.join("breathe_fast_square", "kinetics_breathe_fast_square_v001.avi")
    assert torch.equal(decode.decode_frames(os.path.join(a, rel), range(20)),
                       decode.decode_frames(os.path.join(b, rel), range(20)))
    # Its videos are not the target set's: another generator stream and other class names.
    assert not set(classes) & set(synthetic.SYNTHETIC_ACTIONS)


def test_corpus_relates_to_the_target_set_as_kinetics_to_hmdb51():
    corpus_primitives = {a for a, _, _ in synthetic.corpus_classes().values()}
    target = set(synthetic.SYNTHETIC_ACTIONS)
    assert target - corpus_primitives == {"zigzag", "follow"}  # classes the corpus lacks
    assert corpus_primitives - target == {"bounce", "breathe"}  # and primitives of its own
    # Its speeds bracket the target's swing periods (8-14 frames) without containing them.
    slow, fast = synthetic.CORPUS_SPEEDS["slow"], synthetic.CORPUS_SPEEDS["fast"]
    assert fast[1] <= 8 and slow[0] >= 14


@pytest.mark.parametrize("action", ["bounce", "breathe"])
def test_corpus_primitives_move_as_described(action):
    rng = np.random.default_rng(0)
    p, r, alpha = synthetic.synthetic_layout(action, rng, 40, 64, 48, period=(8, 8))
    gap = np.linalg.norm(p[0] - p[1], axis=1)  # (L,) distance between the objects
    if action == "breathe":  # both swing along the line joining them, in opposite phase, A/2 each
        u = (p[1] - p[0]).mean(axis=0) / np.linalg.norm((p[1] - p[0]).mean(axis=0))
        along = (p - p.mean(axis=1, keepdims=True)) @ u  # (2, L) offsets along that line
        assert np.corrcoef(along)[0, 1] < -0.999
        assert np.allclose(np.abs(along[0]), np.abs(along[1]), atol=1e-3)
        # Together they close the gap by A >= 0.1 S (8-frame period: the samples reach ~0.98 A).
        assert gap.max() - gap.min() > 0.95 * 0.2 * 48
    else:  # one object hops back and forth on a straight segment; the other stays still
        mover = int(np.ptp(p[1], axis=0).sum() > np.ptp(p[0], axis=0).sum())
        path = p[mover] - p[mover].mean(axis=0)  # (L, 2)
        sv = np.linalg.svd(path, compute_uv=False)
        assert sv[0] > 1 and sv[1] < 1e-3 * sv[0]
        assert np.ptp(p[1 - mover], axis=0).max() < 1e-4


def test_squares_cover_more_pixels_than_discs_of_the_same_layout():
    frames = {shape: synthetic.synthetic_video("pulse", np.random.default_rng(3), 4, 64, 48, noise=0,
                                               shape=shape)
              for shape in ("disc", "square")}
    assert not np.array_equal(frames["disc"], frames["square"])
