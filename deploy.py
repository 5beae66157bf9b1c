"""The deployable student: what a finished run leaves to use it, and the clip -> logits model.

Reading guide
-------------
Paper (arXiv 2511.09469): the point of distilling into X3D-S is a student cheap enough to deploy;
the SDD branch, phi and the teachers are training-only. This file is what predict.py, export.py
and bench.py's deployment section share:

  student.json   written beside `student.pt` at the end of every train.py run (reports.py calls
                 `write_student_info`): everything needed to use the weights without the run's
                 data or code paths: the model and preset, the class names (index = logit), the
                 loader's clip (what is cut from a video), the model's own input (frames, size,
                 mean, std) and the evaluation views the run scored. docs/design.md, section 4,
                 has the format.
  load_student   a run folder or a student .pt (its student.json beside it, or one folder up for
                 `student_epochs/epoch_XX.pt`) -> the plain student in eval mode + its info, with
                 errors that say what to do (no student yet, an old run without student.json, a
                 file of another model or preset).
  ClipClassifier the deployed model: the loader's uint8 clip (B, 3, L, S, S) -> logits (B, C), i.e.
                 `models.adapt_input` (frame selection, resize, normalization) + the plain model.
                 predict.py runs it, export.py writes it to ONNX / TorchScript, bench.py times it.

Why the deployed model starts at the uint8 clip and not at the normalized float input: the
normalization statistics and each model's own frame selection and resize (tiny 8x32 -> 6x24,
paper 16x224 -> 13x160) then travel with the weights, so a caller in another language cannot
feed the wrong mean or the wrong frames (which costs accuracy without any error), and export.py's
equality check covers that preprocessing too. What stays outside: decoding and the evaluation
view (window, short-side resize, crop: `data.eval_views`), which depend on the video, not on the
model.
Left out: batching several videos into one call (predict.py runs one video's views at a time),
half precision, quantization.
"""
import json
import os

import torch
import torch.nn as nn

import models
from checkpoints import atomic_write

STUDENT_INFO = "student.json"
STUDENT_WEIGHTS = "student.pt"
INFO_VERSION = 1  # bump when a field changes meaning; load_student refuses versions it does not know


# ------------------------------------------------------------------------------------- student.json
def student_info(config, classes, accuracy=None):
    """The content of student.json, from a run's resolved configuration (config.json's dict) and
    its class names (index = the logit's index). accuracy: the student's results.json row."""
    preset = models.PRESETS[config["preset"]]
    spec = models.input_spec(preset["student"])
    info = {
        "version": INFO_VERSION,
        "weights": STUDENT_WEIGHTS,
        "model": preset["student"],
        "preset": config["preset"],
        # a CE-only run (ablate.py's CE rows) saves its cross-entropy student as student.pt
        "trained": "cross-entropy only" if config.get("skip_student") else "distilled",
        "classes": list(classes),
        # What the data loader cuts from a video (uint8 RGB): the exported model's input.
        "clip": dict(preset["clip"]),
        # The model's own input, which ClipClassifier derives from the clip (models.adapt_input).
        "input": {"frames": spec.frames, "size": spec.size, "mean": list(spec.mean), "std": list(spec.std)},
        # The views the run's video_acc@1 averaged (train.py --eval-clips, --eval-crops).
        "eval_views": {"clips": config["eval_clips"], "crops": config["eval_crops"]},
        "dataset": config.get("dataset"), "split": config.get("split"),
    }
    if accuracy:
        info["accuracy"] = {k: accuracy.get(k) for k in ("clip_acc@1", "video_acc@1")}
    return info


def write_student_info(out_dir, config, classes, accuracy=None):
    """<out_dir>/student.json (see `student_info`) -> its path."""
    path = os.path.join(out_dir, STUDENT_INFO)
    info = student_info(config, classes, accuracy)

    def write(tmp):  # never half a file beside a finished student.pt
        with open(tmp, "w") as f:
            json.dump(info, f, indent=1)
    return atomic_write(path, write)


# ---------------------------------------------------------------------------------- load_student
def find_student(path, info_path=None):
    """A run folder or a weights file (+ an explicit student.json) -> (weights path, info path).
    Raises SystemExit with what to do when either is missing."""
    if os.path.isdir(path):
        weights = os.path.join(path, STUDENT_WEIGHTS)
        if not os.path.isfile(weights):
            unfinished = os.path.isfile(os.path.join(path, "config.json"))
            raise SystemExit(
                f"{path} holds no {STUDENT_WEIGHTS}: " + (
                    "the run has not finished (train.py writes it at the end); finish it with the "
                    "run's command plus --resume (config.json lists its flags), or pass one "
                    "epoch's student: <run>/student_epochs/epoch_XX.pt" if unfinished else
                    "it is not a train.py output folder (--out); pass a run folder or a student .pt file"))
    elif os.path.isfile(path):
        weights = path
    else:
        raise SystemExit(f"{path} does not exist: pass a train.py run folder (its --out) or a student .pt file")
    if info_path is None:
        here = os.path.dirname(os.path.abspath(weights))
        # beside the weights, or one folder up for <run>/student_epochs/epoch_XX.pt
        candidates = [os.path.join(here, STUDENT_INFO), os.path.join(os.path.dirname(here), STUDENT_INFO)]
        info_path = next((c for c in candidates if os.path.isfile(c)), None)
        if info_path is None:
            raise SystemExit(
                f"no {STUDENT_INFO} beside {weights} (nor one folder up): runs made before train.py wrote it "
                f"lack the class names and input settings the weights need. Rerun the run's train.py command "
                f"with --resume (config.json lists its flags; every stage is finished, so it only rewrites "
                f"the reports, {STUDENT_INFO} included), or pass a {STUDENT_INFO} with --info")
    elif not os.path.isfile(info_path):
        raise SystemExit(f"--info {info_path} does not exist")
    return weights, info_path


def read_info(info_path):
    """student.json -> dict, checked against the code (version, model, preset, input)."""
    try:
        with open(info_path) as f:
            info = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"{info_path} is not a readable {STUDENT_INFO}: {e}") from None
    if info.get("version") != INFO_VERSION:
        raise SystemExit(f"{info_path} has version {info.get('version')!r}; this code reads version "
                         f"{INFO_VERSION}: use the code the run was made with")
    preset = info.get("preset")
    if preset not in models.PRESETS or models.PRESETS[preset]["student"] != info.get("model"):
        raise SystemExit(f"{info_path} describes model {info.get('model')!r} of preset {preset!r}, which "
                         f"this code does not have (presets: {', '.join(sorted(models.PRESETS))})")
    spec, saved = models.input_spec(info["model"]), info["input"]
    if ([spec.frames, spec.size, list(spec.mean), list(spec.std)]
            != [saved["frames"], saved["size"], saved["mean"], saved["std"]]):
        # models.py changed the student's input since the run: the weights saw other clips
        raise SystemExit(f"{info_path}: the student was trained on inputs {saved}, while "
                         f"models.input_spec({info['model']!r}) now gives {spec}; use the code the run "
                         "was made with")
    return info


def load_student(path, info_path=None, device="cpu"):
    """A run folder or a student .pt -> (plain student in eval mode on `device`, student.json dict,
    weights path). Every failure is a SystemExit naming the file and what to do."""
    weights, info_path = find_student(path, info_path)
    info = read_info(info_path)
    model = models.build_model(info["model"], len(info["classes"]))
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file, truncated, or holding Python objects
        raise SystemExit(f"{weights} is not a state dict torch can load safely: {e}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SystemExit(f"{weights} is not a plain state dict (names -> tensors) like train.py's student.pt")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise SystemExit(
            f"{weights} does not fit {info['model']} with {len(info['classes'])} classes (preset "
            f"{info['preset']!r}) as {info_path} describes it: a student of another preset or run, or "
            f"another model's weights? Pass the run folder it came from (or its student.json with "
            f"--info). PyTorch says: {str(e)[:400]}") from None
    return model.to(device).eval(), info, weights


# -------------------------------------------------------------------------------- ClipClassifier
class ClipClassifier(nn.Module):
    """The deployed model: uint8 clips (B, 3, L, S, S) as the data loader cuts them (RGB, 0-255) ->
    logits (B, num_classes). = `model(models.adapt_input(clip, spec))`, as train.evaluate scores."""

    def __init__(self, model, spec):
        super().__init__()
        self.model, self.spec = model, spec  # state_dict keys: "model." + the plain model's

    def forward(self, clip):
        return self.model(models.adapt_input(clip, self.spec))  # (B, 3, L, S, S) uint8 -> (B, C)


def clip_shape(info, batch=1):
    """The deployed model's input shape for a student.json: (batch, 3, L, S, S)."""
    return (batch, 3, info["clip"]["num_frames"], info["clip"]["size"], info["clip"]["size"])


def classifier_of(model, info):
    """The plain student + its student.json -> ClipClassifier (eval mode)."""
    return ClipClassifier(model, models.input_spec(info["model"])).eval()
