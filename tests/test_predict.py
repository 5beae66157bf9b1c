"""predict.py: a finished run classifies any video with train.evaluate's own views and numbers;
student.json carries what that needs; bad inputs give errors a user can act on, and one broken
video does not stop the others.

Runs on the tiny synthetic set and one dry run of train.py (tests/conftest.py, `student_run`).
"""
import csv
import json
import shutil

import numpy as np
import pytest
import torch

import data
import deploy
import models
import plumbing
import predict
import reports
import synthetic
import train

CLIPS, CROPS = 2, 2  # the views student_run scored (--eval-clips, --eval-crops)


@pytest.fixture(scope="module")
def eval_set(tiny):
    """The run's evaluation split with its views: what train.evaluate scored."""
    return data.HMDB51(tiny, subset="test", num_clips=CLIPS, num_crops=CROPS,
                       **models.PRESETS["tiny"]["clip"])


def test_a_run_writes_student_json_with_everything_predict_needs(student_run, eval_set):
    info = json.load(open(student_run / "student.json"))
    spec = models.input_spec("x3d_s_tiny")
    assert info["version"] == deploy.INFO_VERSION and info["weights"] == "student.pt"
    assert (info["model"], info["preset"], info["trained"]) == ("x3d_s_tiny", "tiny", "distilled")
    assert info["classes"] == eval_set.classes  # index = the logit's index
    assert info["clip"] == models.PRESETS["tiny"]["clip"]
    assert info["input"] == {"frames": spec.frames, "size": spec.size, "mean": list(spec.mean),
                             "std": list(spec.std)}
    assert info["eval_views"] == {"clips": CLIPS, "crops": CROPS}
    results = json.load(open(student_run / "results.json"))
    assert info["accuracy"]["video_acc@1"] == results["models"]["student"]["video_acc@1"]


def test_eval_views_of_a_file_are_the_evaluation_datasets_views(eval_set):
    clip = models.PRESETS["tiny"]["clip"]
    for i in (0, len(eval_set) - 1):
        views = data.eval_views(eval_set.path(i), clip["num_frames"], clip["frame_stride"], clip["size"],
                                num_clips=CLIPS, num_crops=CROPS)
        assert views.dtype == torch.uint8 and views.shape == (CLIPS * CROPS, 3, 8, 32, 32)
        assert torch.equal(views, eval_set[i][0])  # the very pixels, view for view


def test_predict_gives_train_evaluates_probabilities_and_accuracy(probe_student, eval_set, tmp_path):
    paths = [eval_set.path(i) for i in range(len(eval_set))]
    labels = torch.tensor([label for _, label in eval_set.samples])
    rows = predict.main([str(probe_student), *paths, "--top-k", "3", "--csv", str(tmp_path / "p.csv")])
    assert [r["path"] for r in rows] == paths and not any(r["error"] for r in rows)

    # The probabilities: the student's softmax averaged over the dataset's views of each video.
    model, info, _ = deploy.load_student(str(probe_student))
    spec = models.input_spec("x3d_s_tiny")
    for i in range(len(eval_set)):
        with torch.no_grad():
            z = model(models.adapt_input(eval_set[i][0], spec))  # (V, C), V = clips x crops
        assert torch.allclose(rows[i]["probs"], z.softmax(-1).mean(0), atol=1e-6)
    # The answers depend on the video, so wrong views would show (the test's power).
    assert torch.stack([r["probs"] for r in rows]).std(0).max() > 0.05
    assert len({r["top"][0][0] for r in rows}) >= 2
    top = [r["top"] for r in rows]
    assert all(len(t) == 3 and t[0][1] >= t[1][1] >= t[2][1] for t in top)

    # The accuracy: train.evaluate's video_acc@1 on the same videos and views, and its clip_acc@1
    # (the centred clip's centre crop) from predict.py --clips 1 --crops 1.
    args = train.get_args_parser().parse_args(["--eval-clips", str(CLIPS), "--eval-crops", str(CROPS),
                                               "--workers", "0", "--batch-size", "4", "--device", "cpu"])
    ref = train.evaluate(model, plumbing.eval_loader(eval_set, args), spec, args)
    predicted = torch.stack([r["probs"] for r in rows]).argmax(-1)
    assert ref["video_acc@1"] == pytest.approx(100 * (predicted == labels).float().mean().item())
    centre = predict.main([str(probe_student), *paths, "--clips", "1", "--crops", "1"])
    predicted = torch.stack([r["probs"] for r in centre]).argmax(-1)
    assert ref["clip_acc@1"] == pytest.approx(100 * (predicted == labels).float().mean().item())

    with open(tmp_path / "p.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["path"] for r in table] == paths
    assert table[0]["class_1"] == top[0][0][0]
    assert float(table[0]["prob_1"]) == pytest.approx(top[0][0][1], abs=1e-6)


def test_a_broken_file_is_reported_the_others_are_classified_and_the_exit_code_says_so(
        student_run, eval_set, tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    good = [shutil.copy(eval_set.path(i), folder / f"good_{i}.avi") for i in (0, 1)]
    (folder / "broken.avi").write_bytes(b"\x00" * 1000)  # has a video's name, is no video
    (folder / "notes.txt").write_text("not searched: no video extension")
    with pytest.raises(SystemExit) as stop:
        predict.main([str(student_run), str(folder), "--csv", str(tmp_path / "p.csv")])
    assert stop.value.code not in (0, None)  # a message: Python exits with status 1
    assert "1 of 3 videos could not be classified" in str(stop.value.code)
    out = capsys.readouterr().out
    assert "broken.avi: ERROR not a video PyAV can read" in out
    with open(tmp_path / "p.csv") as f:
        rows = {r["path"]: r for r in csv.DictReader(f)}
    assert list(rows) == sorted([str(folder / "broken.avi"), *map(str, good)])  # folder: sorted
    assert rows[str(folder / "broken.avi")]["error"] and not rows[str(folder / "broken.avi")]["class_1"]
    for path in good:  # after the broken one in sorted order, and still classified
        assert rows[str(path)]["class_1"] in eval_set.classes and not rows[str(path)]["error"]


def test_a_missing_file_and_an_empty_folder_are_clear_errors(student_run, tmp_path, capsys):
    with pytest.raises(SystemExit):
        predict.main([str(student_run), str(tmp_path / "nope.mp4")])
    assert "nope.mp4: ERROR no such file" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no videos .* under the folder"):
        predict.main([str(student_run), str(tmp_path)])


def test_a_video_shorter_than_a_window_is_classified_as_evaluate_does_and_flagged(student_run, tmp_path):
    short = tmp_path / "short.avi"  # 6 frames; a tiny window spans 15 (8 frames, stride 2)
    synthetic.write_video(short, synthetic.synthetic_video("pulse", np.random.default_rng(0),
                                                           num_frames=6, width=64, height=48))
    row, = predict.main([str(student_run), str(short)])
    assert row["frames"] == 6 and "short video: 6 frames, a window spans 15" in row["note"]
    assert len(row["top"]) == 5  # classified: end frames repeated, as data.clip_indices does
    with pytest.raises(SystemExit, match="1 of 1 videos"):
        predict.main([str(student_run), str(short), "--min-frames", "10"])


def test_a_student_of_another_preset_or_model_is_refused_naming_both(student_run, tmp_path):
    # student.json of the paper preset beside the tiny student's weights
    info = json.load(open(student_run / "student.json"))
    paper = deploy.student_info({"preset": "paper", "eval_clips": 1, "eval_crops": 1}, info["classes"])
    (tmp_path / "paper").mkdir()
    shutil.copy(student_run / "student.pt", tmp_path / "paper" / "student.pt")
    json.dump(paper, open(tmp_path / "paper" / "student.json", "w"))
    with pytest.raises(SystemExit, match=r"does not fit x3d_s with 9 classes \(preset 'paper'\)"):
        predict.main([str(tmp_path / "paper"), "any.avi"])
    # the tiny run's student.json beside the CNN teacher's weights (another model)
    (tmp_path / "teacher").mkdir()
    torch.save(models.build_model("x3d_m_tiny", 9).state_dict(), tmp_path / "teacher" / "weights.pt")
    with pytest.raises(SystemExit, match=r"does not fit x3d_s_tiny .*another model's weights"):
        predict.main([str(tmp_path / "teacher" / "weights.pt"), "any.avi", "--info",
                      str(student_run / "student.json")])


def test_an_old_run_without_student_json_gets_a_message_saying_how_to_make_it(student_run, tmp_path):
    old = tmp_path / "old_run"
    shutil.copytree(student_run, old, ignore=shutil.ignore_patterns("student.json"))
    with pytest.raises(SystemExit, match=r"no student.json beside .* --resume .* with --info"):
        predict.main([str(old), "any.avi"])
    # an epoch's student finds the run's student.json one folder up
    epoch = plumbing.student_epoch_path(str(student_run), 1)
    model, info, weights = deploy.load_student(epoch)
    assert weights == epoch and info["model"] == "x3d_s_tiny"


def test_a_folder_without_a_student_says_whether_the_run_is_unfinished(student_run, tmp_path):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(student_run / "config.json", unfinished / "config.json")
    with pytest.raises(SystemExit, match="has not finished .* --resume"):
        predict.main([str(unfinished), "any.avi"])
    with pytest.raises(SystemExit, match="not a train.py output folder"):
        predict.main([str(tmp_path), "any.avi"])


def test_a_ce_only_run_says_so_in_student_json_and_keeps_its_accuracy(tmp_path):
    # train.py --skip-student (ablate.py's CE rows) saves its cross-entropy student as student.pt
    config = vars(train.get_args_parser().parse_args(["--skip-student"]))
    out = {"config": config, "models": {"student_ce": {"clip_acc@1": 50.0, "video_acc@1": 60.0}}, "history": {}}
    reports.write_reports(str(tmp_path), out, models.build_model("x3d_s_tiny", 2), ["a", "b"])
    info = json.load(open(tmp_path / "student.json"))
    assert info["trained"] == "cross-entropy only" and info["classes"] == ["a", "b"]
    assert info["accuracy"] == {"clip_acc@1": 50.0, "video_acc@1": 60.0}
    model, _, _ = deploy.load_student(str(tmp_path))  # and it loads
    assert model.blocks[5].proj.out_features == 2
