"""What a run reports: results.json, the terminal table, log.csv, and the sections of RESULTS.md.

Reading guide
-------------
  a run          `write_config` (config.json, written at the start), `results` (the content
                 of results.json: every model's accuracy and cost, the student's reduction vs the
                 ViT teacher, the per-epoch history, the wall time by stage), `print_report`
                 (the table train.py ends with), `write_reports` (results.json, log.csv, the
                 plain student.pt and its student.json, deploy.py's format).
  RESULTS.md     ablate.py and bench.py each own sections between markers: `machine` (the line
                 naming what produced a measurement), `md_table`, `get_section`,
                 `replace_section`, `write_section` (rewrites one section, keeps the rest).
"""
import csv
import json
import os
import platform

import torch

import deploy
import models
from checkpoints import atomic_write
from plumbing import atomic_save


def model_row(name, model, spec, metrics):
    """One model's entry of results.json: name, cost, input, last and best accuracies."""
    last, best = metrics["last"], metrics["best"] or {}
    return {"name": name, "params": models.count_params(model),
            "gmacs": models.count_gmacs(model, (3, spec.frames, spec.size, spec.size)),
            "input": [spec.frames, spec.size, spec.size],
            "clip_acc@1": last.get("clip_acc@1"), "video_acc@1": last.get("video_acc@1"),
            "best_clip_acc@1": best.get("clip_acc@1"), "best_video_acc@1": best.get("video_acc@1"),
            "best_epoch": best.get("epoch")}


def results(args, preset, trained, metrics, seconds, stage_seconds=None):
    """The content of results.json: config, one row per model, reduction vs the ViT, history,
    the wall time and its split by stage (`stage_seconds`: stage -> seconds).

    trained: role -> (model, input spec) for "vit_teacher", "cnn_teacher", "student";
    metrics: role -> fit()'s metrics, also for "student_ce" (the student's architecture)."""
    rows = {}
    for role in ("vit_teacher", "cnn_teacher", "student", "student_ce"):
        if role in metrics:
            model, spec = trained.get(role, trained["student"])
            name = preset[role if role.endswith("teacher") else "student"]
            rows[role] = model_row(name, model, spec, metrics[role])
    # (a CE-only run, train.py --skip-student, has no distilled student: its cost is the same)
    s = rows.get("student") or model_row(preset["student"], *trained["student"], {"last": {}, "best": None})
    v = rows["vit_teacher"]
    return {"config": vars(args), "models": rows,
            "reduction_vs_vit": {"params_%": 100 * (1 - s["params"] / v["params"]),
                                 "gmacs_%": 100 * (1 - s["gmacs"] / v["gmacs"])},
            "history": {k: metrics[k]["history"] for k in ("student_ce", "student") if k in metrics},
            "seconds": round(seconds, 1),
            "stage_seconds": {k: round(v, 1) for k, v in (stage_seconds or {}).items()}}


def print_report(out):
    print(f"\n{'model':<12} {'name':<14} {'params':>10} {'GMACs':>8} {'input':>10} "
          f"{'clip@1':>7} {'video@1':>8} {'best clip@1':>12}")
    for role, r in out["models"].items():
        inp = "x".join(map(str, r["input"]))
        print(f"{role:<12} {r['name']:<14} {r['params']:>10,} {r['gmacs']:>8.3f} {inp:>10} "
              f"{r['clip_acc@1'] or 0:>7.1f} {r['video_acc@1'] or 0:>8.1f} {r['best_clip_acc@1'] or 0:>12.1f}")
    red = out["reduction_vs_vit"]
    print(f"student vs ViT teacher: {red['params_%']:.1f}% fewer params, {red['gmacs_%']:.1f}% fewer GMACs")
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in out.get("stage_seconds", {}).items())
    print(f"wall time {out['seconds']:.0f} s" + (f" ({stages})" if stages else "") + "\n")


def write_config(args):
    """<out>/config.json: the full resolved configuration, written before anything is trained."""
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "config.json")
    with open(path, "w") as f:
        json.dump(vars(args), f, indent=1, default=str)
    return path


def write_reports(out_dir, out, student, classes=None):
    """results.json, log.csv (one row per stage and epoch), the plain student.pt and, given the
    class names, student.json (what predict.py and export.py need to use it: deploy.py)."""
    atomic_save(student.state_dict(), os.path.join(out_dir, "student.pt"))  # no SDD head in it
    if classes is not None:
        row = out["models"].get("student") or out["models"].get("student_ce")  # CE-only runs
        deploy.write_student_info(out_dir, out["config"], classes, row)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(out, f, indent=1, default=str)
    hist = [r for k in out["history"] for r in out["history"][k]]
    keys = sorted({k for r in hist for k in r}, key=lambda k: (k not in ("stage", "epoch"), k))
    with open(os.path.join(out_dir, "log.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader(), w.writerows(hist)


# --------------------------------------------------------------------- RESULTS.md (bench, ablate)
RESULTS_HEADER = ("# Results\n\nMeasured tables. `ablate.py` and `bench.py` each rewrite only the "
                  "text between their own markers; everything else in this file is left as it is.\n")


def machine():
    """One line naming what produced a measurement: CPU, cores, torch, threads, load."""
    cpu = platform.processor() or "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    # nproc = the cores this process may use (a container or taskset can allow fewer than exist).
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # The load average tells a reader whether other jobs shared the cores during the run.
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    return (f"{cpu}, nproc {nproc}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
            f"Python {platform.python_version()}{load}")


def md_table(header, rows):
    """A markdown table from a header list and rows of already formatted cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def markers(name):
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def get_section(text, name):
    """The text between `name`'s markers, or None when the section is not there."""
    begin, end = markers(name)
    i = text.find(begin)
    j = text.find(end, i + len(begin)) if i >= 0 else -1
    return None if i < 0 or j < 0 else text[i + len(begin):j].strip("\n")


def replace_section(text, name, body):
    """`text` with `name`'s section set to `body` (appended if absent); nothing else changes."""
    begin, end = markers(name)
    block = f"{begin}\n{body.strip(chr(10))}\n{end}"
    i = text.find(begin)
    j = text.find(end, i + len(begin)) if i >= 0 else -1
    if (i < 0) != (j < 0) or (i < 0 and end in text):
        # Half a pair: rewriting would clobber someone else's text, so stop and say where.
        raise ValueError(f"found only one of {begin} / {end} (or them in the wrong order); fix the "
                         f"markers by hand before writing the {name!r} section")
    if i < 0:
        return text.rstrip("\n") + "\n\n" + block + "\n"
    return text[:i] + block + text[j + len(end):]


def write_section(path, name, body):
    """Set `name`'s section of the markdown file `path` (created with a short header if absent)."""
    text = RESULTS_HEADER
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    text = replace_section(text, name, body)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda tmp: write_text(tmp, text))


def write_text(path, text):
    with open(path, "w") as f:
        f.write(text)
