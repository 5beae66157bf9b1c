"""Executable specification of data.py: split files, the HMDB51 Dataset, bad videos."""
import os
import time
import warnings

import pytest
import torch
from torch.utils.data import DataLoader

import bench
import data
import decode
import synthetic
from media import AWKWARD, moving_pattern, write_layout


def test_read_split_awkward_real_world_names(tmp_path):
    write_layout(tmp_path)
    classes, train = data.read_split(tmp_path / data.SPLIT_DIRNAME, split=2, subset="train")
    _, test = data.read_split(tmp_path / data.SPLIT_DIRNAME, split=2, subset="test")
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


def test_clip_indices_and_starts():
    assert data.clip_indices(20, 8, 2, 3) == [3, 5, 7, 9, 11, 13, 15, 17]
    # Too short: clamped (first and last frame repeated), never dropped.
    assert data.clip_indices(5, 4, 2, -1) == [0, 1, 3, 4]
    assert data.uniform_starts(20, 15, 1) == [2]
    assert data.uniform_starts(20, 15, 3) == [0, 2, 5]
    assert data.uniform_starts(10, 15, 2) == [-3, -3]


def test_dataset_shapes_dtypes_labels(tiny):
    train = data.HMDB51(tiny, split=1, subset="train", num_frames=8, frame_stride=2, size=32)
    test = data.HMDB51(tiny, split=1, subset="test", num_frames=8, frame_stride=2, size=32)
    assert len(train) + len(test) == 9 * 6 and train.num_classes == 9
    assert train.classes == sorted(synthetic.SYNTHETIC_ACTIONS)
    for ds in (train, test):
        clip, label = ds[0]
        assert clip.shape == (3, 8, 32, 32) and clip.dtype == torch.uint8
        assert isinstance(label, int) and ds.samples[0][0].startswith(ds.classes[label] + "/")


def test_test_clip_is_deterministic_center_of_the_video(tiny):
    test = data.HMDB51(tiny, subset="test", num_frames=4, frame_stride=3, size=48)
    clip, _ = test[0]
    assert torch.equal(clip, test[0][0])
    # 20 frames, span 10 -> centered start 5; 64x48 resized to 64x48 (short side 48) -> center crop.
    frames = decode.decode_frames(test.path(0), [5, 8, 11, 14])
    assert torch.equal(clip, frames[:, :, 8:56].permute(3, 0, 1, 2))


def test_multi_view_test_mode(tiny):
    views, label = data.HMDB51(tiny, subset="test", num_clips=3, num_crops=3, size=32)[0]
    single, label1 = data.HMDB51(tiny, subset="test", size=32)[0]
    assert views.shape == (9, 3, 8, 32, 32) and views.dtype == torch.uint8 and label == label1
    # 3 clips over 20 frames (span 15): starts 0, 2, 5; the middle one is the centered clip, and
    # the middle crop is the center crop.
    assert torch.equal(views[1 * 3 + 1], single)
    assert not torch.equal(views[0], views[2])  # left and right crops differ
    with pytest.raises(ValueError, match="evaluation"):
        data.HMDB51(tiny, subset="train", num_clips=2)
    with pytest.raises(ValueError, match="evaluation"):
        data.HMDB51(tiny, subset="test", mode="train", num_crops=3)


def test_train_crop_and_flip_are_the_same_for_every_frame(tiny, monkeypatch):
    # A video whose frames are all identical must give a clip whose frames are all identical.
    image = torch.from_numpy(moving_pattern(1, 64, 48)[0])
    monkeypatch.setattr(data, "decode_frames", lambda path, idx: image.expand(len(idx), -1, -1, -1))
    ds = data.HMDB51(tiny, subset="train", size=32)
    torch.manual_seed(0)
    clips = [ds[0][0] for _ in range(8)]
    for clip in clips:
        assert all(torch.equal(clip[:, 0], clip[:, t]) for t in range(1, clip.shape[1]))
    assert any(not torch.equal(clips[0], c) for c in clips[1:])  # but crops differ between calls


def test_train_sampling_is_random(tiny):
    ds = data.HMDB51(tiny, subset="train")
    torch.manual_seed(0)
    clips = [ds[0][0] for _ in range(4)]
    assert any(not torch.equal(clips[0], c) for c in clips[1:])


def test_short_video_is_padded_not_dropped(tmp_path):
    write_layout(tmp_path, {"short": [("short.avi", 2)]}, videos=False)
    (tmp_path / "short").mkdir()
    synthetic.write_video(tmp_path / "short" / "short.avi", moving_pattern(5))
    ds = data.HMDB51(str(tmp_path), subset="test", num_frames=8, frame_stride=2, size=48)
    clip, _ = ds[0]
    # 5 frames, span 15: centered start -5, clamped -> 0 0 0 1 3 4 4 4
    want = decode.decode_frames(ds.path(0), [0, 0, 0, 1, 3, 4, 4, 4])[:, :, 8:56]
    assert torch.equal(clip, want.permute(3, 0, 1, 2))
    problems = data.check(ds)
    assert len(problems) == 1 and "too short" in problems[0][1]


def test_construction_of_full_hmdb51_layout_is_fast_and_decodes_nothing(fake_hmdb51):
    root = fake_hmdb51
    n_files = sum(len(os.listdir(os.path.join(root, c))) for c in bench.HMDB51_CLASSES)
    assert n_files == 6766
    decode.decode_stats.clear()
    start = time.perf_counter()
    train = data.HMDB51(root, split=1, subset="train")
    elapsed = time.perf_counter() - start
    test = data.HMDB51(root, split=3, subset="test")
    assert (len(train), len(test), train.num_classes) == (3570, 1530, 51)
    assert elapsed < 1.0 and sum(decode.decode_stats.values()) == 0
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
        data.HMDB51(str(tmp_path), subset="train")
    assert "kick_ball_2.avi" in str(err.value) and "skip_missing" in str(err.value)
    with pytest.warns(UserWarning, match="skipping 2 videos"):
        ds = data.HMDB51(str(tmp_path), subset="train", skip_missing=True)
    assert len(ds) == 3 and ds.num_missing == 2


def test_training_replaces_an_undecodable_video_warns_and_counts(tiny_with_broken_video):
    root, broken = tiny_with_broken_video
    ds = data.HMDB51(root, subset="train")
    with pytest.warns(UserWarning, match=os.path.basename(broken)):
        clip, label = ds[0]
    assert clip.shape == (3, 8, 32, 32) and ds.num_failed == 1


def test_failure_counter_is_shared_by_dataloader_workers(tiny_with_broken_video):
    root, broken = tiny_with_broken_video
    ds = data.HMDB51(root, subset="train")
    loader = DataLoader(ds, batch_size=4, num_workers=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = list(loader)
    assert sum(len(b[1]) for b in batches) == len(ds)  # the epoch completed
    assert ds.num_failed == 1


def test_evaluation_excludes_undecodable_videos_and_counts_them(tiny_with_broken_video):
    root, broken = tiny_with_broken_video
    test = data.HMDB51(root, subset="test")
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
    ds = data.HMDB51(root, subset="train", mode="eval", num_clips=2, num_crops=3)
    with pytest.warns(UserWarning, match="excluded from evaluation"):
        assert ds[0] is None and ds.num_failed == 1  # evaluation semantics for broken videos
    views, label = ds[1]
    assert views.shape == (6, 3, 8, 32, 32) and torch.equal(views, ds[1][0])


def test_check_lists_unreadable_videos(tiny_with_broken_video):
    root, broken = tiny_with_broken_video
    train = data.HMDB51(root, subset="train")
    problems = data.check(train)
    assert [p for p, _ in problems] == [broken] and "unreadable" in problems[0][1]
    assert data.check(torch.utils.data.Subset(train, [1, 2])) == []  # a Subset works too


def test_too_many_consecutive_failures_raise_instead_of_spinning(tmp_path):
    write_layout(tmp_path, {"junk": [("a.avi", 1), ("b.avi", 1)]})
    ds = data.HMDB51(str(tmp_path), subset="train", max_replacements=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="check"):
            ds[0]


def test_fake_layout_has_hmdb51_counts(fake_hmdb51):
    root = fake_hmdb51
    for k in (1, 2, 3):
        classes, train = data.read_split(os.path.join(root, data.SPLIT_DIRNAME), k, "train")
        assert len(classes) == 51 and len(train) == 3570
        assert "climb" in classes and "climb_stairs" in classes


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_preloaded_videos_give_the_same_clips_as_decoding_on_the_fly(tiny, mode):
    views = dict(num_clips=2, num_crops=3) if mode == "eval" else {}
    lazy = data.HMDB51(tiny, subset="train", mode=mode, **views)
    ram = data.HMDB51(tiny, subset="train", mode=mode, preload=True, **views)
    assert len(ram._videos) == len(lazy)
    for i in range(len(lazy)):
        torch.manual_seed(i)  # the same random window, crop and flip for both
        a = lazy[i]
        torch.manual_seed(i)
        b = ram[i]
        assert torch.equal(a[0], b[0]) and a[1] == b[1]


def test_preload_reports_an_undecodable_video_when_it_is_asked_for(tiny_with_broken_video):
    root, broken = tiny_with_broken_video
    ds = data.HMDB51(root, subset="train", preload=True)  # construction does not fail
    assert ds.num_failed == 0
    with pytest.warns(UserWarning, match=os.path.basename(broken)):
        clip, label = ds[0]  # replaced, as without preload
    assert clip.shape == (3, 8, 32, 32) and ds.num_failed == 1
    test = data.HMDB51(root, subset="train", mode="eval", preload=True)
    with pytest.warns(UserWarning, match="excluded from evaluation"):
        assert test[0] is None
