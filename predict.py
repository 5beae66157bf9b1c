"""predict.py -- classify videos with a trained student: the top-k classes and their probabilities.

Reading guide
-------------
    python predict.py RUN_OR_STUDENT_PT VIDEO_OR_FOLDER [...] [--clips N] [--crops M] [--top-k K]
                      [--csv FILE]

A video's prediction is train.evaluate's video_acc@1 score for it: the softmax of the student's
logits averaged over the evaluation views, `--clips` windows spread evenly over the video x
`--crops` crops along its long side (defaults: the views the run scored, student.json's
"eval_views"). The views come from `data.eval_views` (the same code the evaluation Dataset runs)
and go through `deploy.ClipClassifier` (models.adapt_input + the student), so for a video of the
run's evaluation split the probabilities are the ones train.evaluate averaged
(tests/test_predict.py checks it). `--clips 1 --crops 1` is the centred view clip_acc@1 scores.

  the student    a run folder (its student.pt and student.json) or a student .pt file with its
                 student.json beside it (or one folder up: student_epochs/epoch_XX.pt); deploy.py
                 loads it and explains what is wrong when it cannot (no student yet, an old run
                 without student.json, weights of another preset or model).
  the videos     files PyAV reads (any container and codec FFmpeg decodes), or folders: every
                 file with a video extension below them (`VIDEO_EXTENSIONS`), sorted.
  output         one line per video: `path: class p, class p, ...`; `--csv FILE` writes the same
                 as a table. A video that cannot be classified (not a video, unreadable, shorter
                 than --min-frames) is reported on its line and the others are still processed;
                 the exit code is then 1, after the last video.
Note: a video shorter than one window (num_frames x frame_stride) is classified the way
train.py's evaluation scores it, with its first / last frame repeated (data.clip_indices), and
its line says so; `--min-frames` refuses such videos instead.
Left out: batching several videos into one forward (one video's views form the batch), reading
from a camera or a stream, temporal localization.
"""
import argparse
import csv
import os
import sys

import torch
from tqdm import tqdm

import data
import deploy
import options
from decode import VideoDecodeError, count_frames

# Extensions a folder is searched for (files named on the command line are always tried).
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv",
                    ".flv", ".3gp", ".ogv", ".ts")


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=options.DefaultsFormatter)
    p.add_argument("student", help="a finished train.py run folder (its --out) or a student .pt file")
    p.add_argument("videos", nargs="+", help="video files, or folders searched for videos")
    p.add_argument("--clips", type=int, default=None,
                   help="temporal windows per video (default: the run's --eval-clips, from student.json)")
    p.add_argument("--crops", type=int, default=None,
                   help="crops per window along the long side (default: the run's --eval-crops)")
    p.add_argument("--top-k", type=int, default=5, help="classes printed per video (at most all)")
    p.add_argument("--csv", default=None, help="also write one row per video to this CSV file")
    p.add_argument("--min-frames", type=int, default=0,
                   help="refuse videos with fewer decodable frames (0: classify any length, as "
                        "train.py's evaluation does, repeating end frames)")
    p.add_argument("--info", default=None, help="the student.json to use when it is not beside the .pt file")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda")
    return p


def video_files(paths):
    """Command-line paths -> video files: files as given, folders searched (sorted) for
    VIDEO_EXTENSIONS. A folder without videos is an error: probably the wrong folder."""
    files = []
    for path in paths:
        if not os.path.isdir(path):
            files.append(path)  # tried as given; a missing file is reported on its own line
            continue
        found = sorted(os.path.join(folder, name) for folder, _, names in os.walk(path)
                       for name in names if name.lower().endswith(VIDEO_EXTENSIONS))
        if not found:
            raise SystemExit(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) under the folder {path}")
        files += found
    return files


class TooShort(ValueError):
    """A video with fewer frames than --min-frames asks for."""


@torch.no_grad()
def classify(classifier, path, info, clips, crops, device="cpu"):
    """One video -> probabilities (C,): the softmax averaged over its clips x crops evaluation
    views, as train.evaluate averages them."""
    clip = info["clip"]
    views = data.eval_views(path, clip["num_frames"], clip["frame_stride"], clip["size"],
                            num_clips=clips, num_crops=crops)  # uint8 (V, 3, L, S, S)
    z = classifier(views.to(device)).float()  # (V, C) logits, one row per view
    return z.softmax(-1).mean(0).cpu()  # (V, C) -> (C,)


def describe(error):
    """A decoding or file error -> the part a user can act on (the path is printed before it)."""
    if isinstance(error, VideoDecodeError):
        return f"not a video PyAV can read: {error}"
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, TooShort):
        return str(error)
    return f"{type(error).__name__}: {error}"


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    model, info, weights = deploy.load_student(args.student, args.info, args.device)
    classifier = deploy.classifier_of(model, info)
    classes = info["classes"]
    clips = info["eval_views"]["clips"] if args.clips is None else args.clips
    crops = info["eval_views"]["crops"] if args.crops is None else args.crops
    if clips < 1 or crops < 1 or args.top_k < 1:
        raise SystemExit("--clips, --crops and --top-k must be at least 1")
    k = min(args.top_k, len(classes))
    span = (info["clip"]["num_frames"] - 1) * info["clip"]["frame_stride"] + 1  # frames of one window
    files = video_files(args.videos)
    print(f"predict.py: {info['model']} ({info['preset']} preset, {info['trained']}) from {weights}; "
          f"{len(classes)} classes; {clips} clip(s) x {crops} crop(s) per video; {len(files)} video(s)",
          file=sys.stderr)

    rows = []
    bar = tqdm(files, desc="predict", unit="video", disable=len(files) < 2, file=sys.stderr)
    for path in bar:
        row = {"path": path, "frames": None, "top": [], "probs": None, "note": "", "error": ""}
        try:
            frames = count_frames(path)
            if frames < args.min_frames:
                raise TooShort(f"too short: {frames} frames, fewer than --min-frames {args.min_frames}")
            row["frames"] = frames
            row["probs"] = classify(classifier, path, info, clips, crops, args.device)
            p, i = row["probs"].topk(k)
            row["top"] = [(classes[j], float(q)) for q, j in zip(p, i.tolist())]
            if frames < span:
                row["note"] = f"short video: {frames} frames, a window spans {span}; end frames repeated"
        except Exception as e:  # noqa: BLE001 -- one bad file must not stop a folder of
            # thousands: the error goes on its line, and the exit code says some failed
            row["error"] = describe(e)
        rows.append(row)
        line = (f"{path}: ERROR {row['error']}" if row["error"] else
                f"{path}: " + ", ".join(f"{c} {q:.3f}" for c, q in row["top"])
                + (f"  ({row['note']})" if row["note"] else ""))
        tqdm.write(line, file=sys.stdout)

    if args.csv:
        write_csv(args.csv, rows, k)
        print(f"written: {args.csv}", file=sys.stderr)
    failed = [r for r in rows if r["error"]]
    if failed:
        raise SystemExit(f"{len(failed)} of {len(rows)} videos could not be classified: "
                         + ", ".join(r["path"] for r in failed[:5]) + (" ..." if len(failed) > 5 else ""))
    return rows


def write_csv(path, rows, k):
    """One row per video: path, frames, class_1, prob_1, ..., class_k, prob_k, note, error."""
    ranks = [f"{w}_{i}" for i in range(1, k + 1) for w in ("class", "prob")]  # class_1, prob_1, ...
    header = ["path", "frames", *ranks, "note", "error"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            top = [x for c, q in r["top"] for x in (c, f"{q:.6f}")]
            top += [""] * (2 * k - len(top))
            w.writerow([r["path"], r["frames"] if r["frames"] is not None else "", *top, r["note"], r["error"]])


if __name__ == "__main__":
    main()
