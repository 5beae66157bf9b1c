"""export.py -- the trained student as one deployable file (ONNX or TorchScript), checked on real clips.

Reading guide
-------------
    python export.py RUN_OR_STUDENT_PT [--format onnx|torchscript] [--dynamic-batch | --batch N]
                     [--out FILE] [--check-videos VIDEO ...]

What is exported: `deploy.ClipClassifier`, the deployable student alone: `models.adapt_input`
(frame selection, antialiased resize, normalization) followed by the plain student loaded from
student.pt. The SDD head (phi + SDB) and the teachers are training-only; student.pt never holds
them, and tests/test_export.py checks that no tensor or node of theirs is in the file.

The file's interface (docs/design.md, section 4, and the README say the same):
    input  "clip"    uint8 (B, 3, L, S, S): B clips, RGB, L frames, S x S pixels, values 0-255,
                     not normalized; L, S = student.json's "clip" (tiny 8 x 32, paper 16 x 224).
                     A clip is what data.eval_views cuts from a video: L frames `frame_stride`
                     apart, each frame's short side resized to S (bilinear, antialiased), centre
                     crop (or crops spread along the long side).
    output "logits"  float32 (B, C), C = len(student.json's "classes"), in that order; softmax
                     over the last axis gives probabilities; predict.py averages the softmax of
                     a video's views.
    B is fixed (--batch, default 1) unless --dynamic-batch (ONNX: the axis is named "batch").
    The file carries student.json: ONNX in its metadata_props ("student.json"), TorchScript as
    an extra file of the same name (torch.jit.load(..., _extra_files=...)).
Why uint8 in and the adapter inside: see deploy.py's reading guide (the statistics and the
student's own frame selection travel with the weights; the check covers them too).

ONNX: `torch.onnx.export(..., dynamo=True)` (torch.export, then onnxscript), opset 20 at
torch 2.14. It exports X3D and MViT (tiny and full size) with a static or a dynamic batch axis.
Note: the older TorchScript-based exporter (dynamo=False) is no fallback here: it has no ONNX
symbolic for the antialiased resize (`aten::_upsample_bilinear2d_aa`, inside adapt_input) and
fails on the student; the dynamo exporter maps it to ONNX's Resize with antialias=1 (opset >= 18).
The per-node metadata the exporter writes (Python stack traces with this machine's paths) is
dropped; the weights are stored inside the one .onnx file (no external-data file: < 2 GB).
TorchScript: `torch.jit.trace` of the same module, for C++ (libtorch) without Python. Note:
torch marks TorchScript deprecated in favour of torch.export; we keep it because libtorch still
loads it directly and ONNX Runtime is the recommended path. A trace records the batch size as a
shape operation, so a traced file takes any batch; the check runs it at two.

The check (always, unless --no-check): a few real clips, decoded from videos (--check-videos, or
synthetic videos rendered into a temporary folder), through PyTorch's ClipClassifier and through
the exported file (ONNX Runtime / torch.jit.load) at batch 1 and at a batch of several clips (or
the fixed batch); passes when |z_file - z_torch| <= atol + rtol * |z_torch| for every logit and
the top-1 class agrees wherever PyTorch's top-2 margin exceeds that tolerance. The file is
written under a temporary name and renamed only when the check passes.
Runtime packages: onnx, onnxscript and onnxruntime (requirements-export.txt) are needed only
here and in bench.py's deployment section; predict.py runs on torch alone.
"""
import argparse
import contextlib
import json
import os
import tempfile
import time
import warnings

import torch

import data
import deploy
import models
import options
import synthetic

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
EXPORT_EXTRA = "pip install -r requirements-export.txt"


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=options.DefaultsFormatter)
    p.add_argument("student", help="a finished train.py run folder (its --out) or a student .pt file")
    p.add_argument("--format", default="onnx", choices=sorted(FORMATS),
                   help="onnx (ONNX Runtime, any language) or torchscript (libtorch, C++)")
    p.add_argument("--out", default=None,
                   help="output file (default: beside student.pt, student.onnx / student.torchscript.pt)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--batch", type=int, default=1, help="the fixed batch size of the exported input")
    g.add_argument("--dynamic-batch", action="store_true",
                   help="ONNX: a named batch axis of any size (TorchScript traces take any batch anyway)")
    p.add_argument("--check-videos", nargs="+", default=None,
                   help="videos whose clips the check runs (default: synthetic videos rendered into a "
                        "temporary folder)")
    p.add_argument("--atol", type=float, default=1e-4, help="check: absolute tolerance on each logit")
    p.add_argument("--rtol", type=float, default=1e-4, help="check: tolerance relative to PyTorch's logit")
    p.add_argument("--no-check", action="store_true", help="skip the check (not recommended)")
    p.add_argument("--info", default=None, help="the student.json to use when it is not beside the .pt file")
    return p


# ------------------------------------------------------------------------------------ exporters
def _quiet():
    """Silence what tracing prints about adapt_input's shape checks (static for a fixed clip
    shape, on purpose) and torch's TorchScript deprecation notice (the guide says why we keep it)."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated", category=FutureWarning)
    return stack


def export_onnx(classifier, path, example, dynamic_batch=False, metadata=None):
    """ClipClassifier -> ONNX file at `path` (dynamo exporter; input "clip", output "logits").
    example: a uint8 clip batch of the exported shape (with a dynamic batch: B >= 2, as
    torch.export treats a size-1 axis as a constant). metadata: {key: str} stored in the file."""
    try:
        import onnx  # noqa: F401 -- the exporter needs onnx and onnxscript
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"ONNX export needs onnx and onnxscript ({e}): {EXPORT_EXTRA}") from None
    shapes = {"clip": {0: torch.export.Dim("batch")}} if dynamic_batch else None
    with _quiet(), torch.no_grad():
        torch.onnx.export(classifier, (example,), path, dynamo=True, input_names=["clip"],
                          output_names=["logits"], dynamic_shapes=shapes, external_data=False,
                          verbose=False)
    model = onnx.load(path)
    for node in model.graph.node:  # stack traces with this machine's paths: not part of the model
        del node.metadata_props[:]
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, path)
    return path


def export_torchscript(classifier, path, example, metadata=None):
    """ClipClassifier -> TorchScript file (torch.jit.trace); metadata as extra files."""
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(classifier, (example,), check_trace=False)
        torch.jit.save(traced, path, _extra_files=metadata or {})
    return path


# ------------------------------------------------------------------------------------- runtimes
def onnx_session(path, threads=None):
    """An ONNX Runtime CPU session for `path`; threads: intra-op threads (None: ORT's choice)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise SystemExit(f"running ONNX files needs onnxruntime: {EXPORT_EXTRA}") from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1  # one graph at a time: no parallel branches to run
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def load_runner(path, fmt, threads=None):
    """An exported file -> a function uint8 clip (B, 3, L, S, S) -> float32 logits (B, C)."""
    if fmt == "onnx":
        session = onnx_session(path, threads)
        return lambda clip: torch.from_numpy(session.run(["logits"], {"clip": clip.numpy()})[0])
    with _quiet():
        module = torch.jit.load(path, map_location="cpu")
    return torch.inference_mode()(lambda clip: module(clip))


# ---------------------------------------------------------------------------------------- check
def check_videos(folder, info, n=4):
    """Render n synthetic videos (one per class of the built-in set) into `folder`, long enough
    for one window of the student's clip and large enough for its crop -> their paths."""
    clip = info["clip"]
    span = (clip["num_frames"] - 1) * clip["frame_stride"] + 1
    w, h = (64, 48) if clip["size"] <= 48 else (320, 240)  # the tiny set's size, or HMDB51's
    root = synthetic.make_synthetic_hmdb51(folder, num_classes=n, videos_per_class=1,
                                           num_frames=max(20, span), width=w, height=h)
    return sorted(os.path.join(root, c, f) for c in os.listdir(root)
                  if os.path.isdir(os.path.join(root, c)) and c != data.SPLIT_DIRNAME
                  for f in os.listdir(os.path.join(root, c)))


def real_clips(videos, info):
    """Every evaluation view of the videos (student.json's clips x crops) -> uint8 (N, 3, L, S, S)."""
    clip, views = info["clip"], info["eval_views"]
    return torch.cat([data.eval_views(v, clip["num_frames"], clip["frame_stride"], clip["size"],
                                      num_clips=views["clips"], num_crops=views["crops"]) for v in videos])


def compare(run, classifier, clips, batches, atol, rtol):
    """Logits of the exported file vs PyTorch on `clips`, in batches of each size in `batches`
    -> {"max_abs_diff", "worst_excess" (<= 0: within tolerance), "top1_agree", "top1_checked", "clips"}."""
    with torch.inference_mode():
        z_torch = classifier(clips).float()  # (N, C)
    worst, excess, agree, checked = 0.0, -float("inf"), 0, 0
    for b in batches:
        for i in range(0, len(clips), b):
            chunk = clips[i:i + b]
            if len(chunk) < b:  # a fixed batch axis: fill the last chunk with the first clips
                chunk = torch.cat([chunk, clips[:b - len(chunk)]])
            z_file = run(chunk)[:len(clips[i:i + b])]
            ref = z_torch[i:i + b]
            d = (z_file - ref).abs()
            worst = max(worst, d.max().item())
            excess = max(excess, (d - (atol + rtol * ref.abs())).max().item())
            top2 = ref.topk(2, dim=-1).values
            clear = (top2[:, 0] - top2[:, 1]) > 2 * (atol + rtol * top2[:, 0].abs())  # no near-tie
            agree += ((z_file.argmax(-1) == ref.argmax(-1)) & clear).sum().item()
            checked += clear.sum().item()
    return {"max_abs_diff": worst, "worst_excess": excess, "top1_agree": agree, "top1_checked": checked,
            "clips": len(clips)}


# ----------------------------------------------------------------------------------------- main
def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if args.batch < 1:
        raise SystemExit("--batch must be at least 1")
    model, info, weights = deploy.load_student(args.student, args.info)
    classifier = deploy.classifier_of(model, info)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(weights)), "student" + FORMATS[args.format])
    # torch.export specializes a size-1 axis to a constant, so a dynamic axis is traced at 2.
    batch = 2 if args.dynamic_batch else args.batch
    example = torch.randint(0, 256, deploy.clip_shape(info, batch), dtype=torch.uint8)
    shape = " x ".join(map(str, deploy.clip_shape(info)[1:]))  # 3 x L x S x S
    metadata = {"student.json": json.dumps(info), "classes": json.dumps(info["classes"]),
                "input": f"clip: uint8 {'batch' if args.dynamic_batch else batch} x {shape} (batch, 3 RGB "
                         "channels, frames, height, width), 0-255, not normalized",
                "output": f"logits: float32 B x {len(info['classes'])}, the classes of 'classes' in order"}
    tmp = out + ".tmp"  # renamed to `out` once the check passed
    t0 = time.time()
    print(f"export.py: {info['model']} ({info['preset']} preset) from {weights} -> {args.format}, input "
          f"uint8 {'B' if args.dynamic_batch else batch} x {' x '.join(map(str, deploy.clip_shape(info)[1:]))}",
          flush=True)
    if args.format == "onnx":
        export_onnx(classifier, tmp, example, args.dynamic_batch, metadata)
    else:
        export_torchscript(classifier, tmp, example, metadata)
    result = {"path": out, "format": args.format, "seconds": round(time.time() - t0, 1),
              "bytes": os.path.getsize(tmp), "params": models.count_params(model)}
    print(f"exported in {result['seconds']:.1f} s: {result['bytes'] / 1e6:.2f} MB, "
          f"{result['params']:,} student parameters")

    if not args.no_check:
        with tempfile.TemporaryDirectory() as folder:
            videos = args.check_videos or check_videos(folder, info)
            try:
                clips = real_clips(videos, info)
            except Exception as e:  # noqa: BLE001 -- a user's --check-videos that do not decode
                os.remove(tmp)
                raise SystemExit(f"the check cannot read its videos ({e}); pass others with --check-videos "
                                 "or skip it with --no-check") from None
        fixed = not args.dynamic_batch and args.format == "onnx"
        batches = [args.batch] if fixed else sorted({1, len(clips)})
        c = compare(load_runner(tmp, args.format), classifier, clips, batches, args.atol, args.rtol)
        ok = c["worst_excess"] <= 0 and c["top1_agree"] == c["top1_checked"]
        source = "--check-videos" if args.check_videos else "rendered synthetic videos"
        runtime = "ONNX Runtime" if args.format == "onnx" else "torch.jit.load"
        print(f"check ({runtime} vs PyTorch): {c['clips']} clips of {len(videos)} {source}, batch "
              f"{' and '.join(map(str, batches))}: max |logits - PyTorch's| = {c['max_abs_diff']:.2e}, "
              f"tolerance |d| <= {args.atol:g} + {args.rtol:g} |z|: {'OK' if ok else 'FAILED'}; top-1 "
              f"agrees on {c['top1_agree']}/{c['top1_checked']} clips without a near-tie")
        result.update(check=c, ok=ok, tolerance={"atol": args.atol, "rtol": args.rtol})
        if not ok:
            os.remove(tmp)
            raise SystemExit(f"the exported {args.format} file does not compute what PyTorch computes "
                             "(see the check above); nothing was written")
    os.replace(tmp, out)
    print(f"written: {out}")
    return result


if __name__ == "__main__":
    main()
