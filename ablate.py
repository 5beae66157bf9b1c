"""ablate.py -- the ablation table: what each part of the method adds, over seeds (RESULTS.md).

Reading guide
-------------
One command, `python ablate.py`, trains every row below for every seed (`--seeds 0 1 2`) by
calling `train.main(...)` in this process, then writes the table into RESULTS.md (between
`<!-- ablation:begin -->` and `<!-- ablation:end -->`; bench.py owns another section of the same
file) and the per-seed numbers into `results/ablation.csv` beside RESULTS.md.

    row          train.py flags                            question it answers
    ce           (the student_ce of another row)           what the student learns alone
    kd_cnn       --weighting cnn  --beta 0 --gamma 0       KD from the CNN teacher only
    kd_vit       --weighting vit  --beta 0 --gamma 0       KD from the ViT teacher only
    uniform      --weighting uniform --beta 0 --gamma 0    both teachers, fixed 1/2 - 1/2
    entropy      --weighting entropy --beta 0 --gamma 0    confidence-only weights (no discrepancy)
    datw         --weighting datw --beta 0 --gamma 0       Paper: DATW
    datw_sdd     --weighting datw --gamma 0                Paper: DATW + SDD (residual target)
    full         --weighting datw                          Paper: DATW + SDD + RKD, the method
    full_direct  --weighting datw --sdd-target vit         the method, SDD mimicking the ViT feature
    full_teachers_scratch  --teacher-init scratch          the method with teachers that know only
                                                           the target split (their own teachers)
    full_student_zoo       --student-init pretrained       the method with a student that starts
    ce_student_zoo         (its student_ce)                from the zoo, and its own CE baseline
                                                           (the same initialization)

How the rows share work (and why the comparison is fair):
- Teachers are trained once per seed: train.py caches a trained teacher under --cache-dir keyed
  by everything that changes it (seed included, the row's flags not), so the first row of a seed
  trains both teachers and every later row of that seed loads them. The table checks it: every
  row of a seed must report the same teacher accuracies, else a warning is printed and written.
- CE only: train.py trains the CE-only student (`student_ce`) before distilling; only one row per
  seed needs to (the first selected one, the "carrier"), every other row passes
  --skip-student-ce. It is the same recipe as the distilled students: the same initial weights
  (both seeded by (seed, "student", "init")), optimizer, schedule, epochs and batch size.
  train.py also seeds each epoch's shuffling and augmentation identically for both student
  stages, so student_ce and every distilled student see the same batches (a paired comparison).
  If CE is asked for while every selected distillation row of that seed is already finished
  without it, a row folder `ce/seed<k>` runs the `datw` row's recipe just to get student_ce.
- Each run lives in `<out>/<row>/seed<k>`. A run is finished when its results.json exists:
  finished runs are skipped, so the command can be rerun after an interruption; a started,
  unfinished run continues from its last epoch (train.py --resume). A finished run made with
  other settings (e.g. other --epochs) is an error, never silently reused; a train.py flag added
  after a run finished is only reported under the table (its default is assumed).

Where a row evaluates: the test split by default (the final table); `--val` holds out 20% of the
training videos instead (train.py --val-fraction 0.2) and writes under runs/ablation_val with its
own RESULTS.md there. Tune on --val only: choosing settings by the test-split table would leak the
test split into the method.

Claims (computed, never typed in): for full vs CE, DATW vs uniform and residual vs direct SDD,
the difference of the means and that difference in units of the pooled std
sqrt((s_A^2 + s_B^2) / 2) over seeds, "> 2 std" when it exceeds 2, and in how many seeds A beat B
(the seeds are paired: same teachers, same data).

Extra train.py arguments go after `--`: `python ablate.py --seeds 0 -- --epochs 2 --dry-run`.
Every row gets them first and its own flags after, so a row's ablation switches always win.
"""
import argparse
import csv
import json
import math
import os
import shlex
import statistics
import sys
import time

import torch

import plumbing
import train
from reports import machine, md_table, write_section

KD_ONLY = ["--beta", "0", "--gamma", "0"]  # SDD and RKD off: the row is about the KD target alone
# key -> (label in the table, train.py flags). "ce" has no flags: it is read from a carrier row.
ROWS = {
    "ce": ("CE only (no teacher)", None),
    "kd_cnn": ("KD, CNN teacher only", ["--weighting", "cnn", *KD_ONLY]),
    "kd_vit": ("KD, ViT teacher only", ["--weighting", "vit", *KD_ONLY]),
    "uniform": ("KD, both teachers, uniform weights", ["--weighting", "uniform", *KD_ONLY]),
    "entropy": ("KD, both teachers, entropy-only weights", ["--weighting", "entropy", *KD_ONLY]),
    "datw": ("DATW", ["--weighting", "datw", *KD_ONLY]),
    "datw_sdd": ("DATW + SDD", ["--weighting", "datw", "--sdd-target", "residual", "--gamma", "0"]),
    "full": ("DATW + SDD + RKD (full method)", ["--weighting", "datw", "--sdd-target", "residual"]),
    "full_direct": ("full method, SDD predicts the ViT feature (direct mimicry)",
                    ["--weighting", "datw", "--sdd-target", "vit"]),
    # The benchmark's own lesson: the same method with teachers that know only the target split.
    "full_teachers_scratch": ("full method, teachers trained from scratch on the target split",
                              ["--weighting", "datw", "--sdd-target", "residual", "--teacher-init", "scratch"]),
    # Does the student's own pretraining matter? Both student stages start from the zoo.
    "ce_student_zoo": ("CE only, student from the zoo", None),
    "full_student_zoo": ("full method, student from the zoo",
                         ["--weighting", "datw", "--sdd-target", "residual", "--student-init", "pretrained"]),
}
# Rows that train their own CE-only student (another initialization than the shared one): the
# distillation row always runs student_ce, and it fills the CE row named here.
OWN_CE = {"full_student_zoo": "ce_student_zoo"}
DISTILL_ROWS = [r for r in ROWS if r != "ce" and r not in OWN_CE.values()]
OWN_TEACHERS = {"full_teachers_scratch": "scratch"}  # rows whose teachers are not the shared ones
CE_FALLBACK_ROW = "datw"  # recipe of the ce/seed<k> folder when no other row can carry student_ce
# (A, B, what the comparison tests): each becomes two lines of the claims table.
CLAIMS = [("full", "ce", "full method vs CE only"),
          ("datw", "uniform", "DATW vs uniform teacher weights"),
          ("full", "full_direct", "SDD: residual vs direct ViT-feature mimicry"),
          ("full", "full_teachers_scratch", "pretrained vs from-scratch teachers"),
          ("full_student_zoo", "ce_student_zoo", "full method vs CE, student from the zoo"),
          ("full_student_zoo", "full", "student from the zoo vs from scratch")]
METRICS = ("clip_acc@1", "video_acc@1", "best_clip_acc@1")
# train.py flags that ablate.py sets itself: passing them after `--` would be overridden.
OWNED = ("seed", "out", "resume", "val_fraction", "skip_student_ce", "weighting", "sdd_target")
# Settings that may differ between the run on disk and now without changing its numbers
# (--pretrained-dir: where the same published files lie; --check-weights never trains).
NOT_RESULTS = ("resume", "workers", "preload", "device", "skip_student_ce", "cache_dir",
               "pretrained_dir", "check_weights")


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog="train.py arguments after `--` are passed to every row.")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="run seeds (train.py --seed); mean and std are over these (default: 0 1 2)")
    p.add_argument("--rows", nargs="+", default=list(ROWS),
                   help=f"rows to run, space or comma separated (default: all): {', '.join(ROWS)}")
    p.add_argument("--out", default=None,
                   help="run folders <out>/<row>/seed<k> (default runs/ablation, with --val "
                        "runs/ablation_val)")
    p.add_argument("--results", default=None,
                   help="markdown file for the table (default RESULTS.md, with --val "
                        "<out>/RESULTS.md); the CSV goes to results/ablation.csv beside it")
    p.add_argument("--val", action="store_true",
                   help="evaluate on 20%% of the training videos (train.py --val-fraction 0.2), "
                        "not the test split: use this for tuning")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's choice); 1 per process when the cores "
                        "are shared with other jobs, as oversubscribed threads slow every step")
    return p


# ------------------------------------------------------------------------------- run folders
def run_dir(out, row, seed):
    return os.path.join(out, row, f"seed{seed}")


def load_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def row_argv(row, seed, out, passthrough, val, skip_ce):
    """train.py arguments of one run: passthrough first, then the row's flags (which win)."""
    folder = run_dir(out, row, seed)
    flags = ROWS[CE_FALLBACK_ROW if row == "ce" else row][1]
    argv = [*passthrough, *flags, "--seed", str(seed), "--out", folder]
    if val:
        argv += ["--val-fraction", "0.2"]
    if skip_ce:
        argv.append("--skip-student-ce")
    if os.path.exists(os.path.join(folder, "config.json")):
        argv.append("--resume")  # started before and not finished: continue from its checkpoints
    return argv


def settings_mismatch(saved_config, argv):
    """-> (settings where a finished run differs from what `argv` would run now,
           train.py flags added since that run, which it therefore ran without).

    A flag the run predates is not an error: a new flag's default normally keeps the old
    behaviour, and hours of finished runs should not be lost to an unrelated new option. It is
    reported, so a reader can judge.
    """
    parsed = train.get_args_parser().parse_args(argv)
    plumbing.resolve_defaults(parsed)  # as train.main resolves them before config.json is written
    want = json.loads(json.dumps(vars(parsed), default=str))
    want = {k: v for k, v in want.items() if k not in NOT_RESULTS}
    differ = [f"{k}: {saved_config[k]!r} on disk, {v!r} now" for k, v in want.items()
              if k in saved_config and saved_config[k] != v]
    return differ, sorted(k for k in want if k not in saved_config)


def plan(table, seeds, rows, out):
    """-> list of (row, seed, skip_ce) to run now, seed-major, in table order.

    `table` holds the finished runs (collect()). Per seed, student_ce (the CE row) must come from
    one run: a finished run that has it, a started run that will produce it, or else the first
    not-yet-started selected row. A started run keeps the --skip-student-ce it started with
    (train.py's --resume refuses checkpoints written with other settings).
    """
    todo = []
    for seed in seeds:
        # (selecting an own-CE row selects the distillation run that produces it)
        pending = [r for r in DISTILL_ROWS if (r in rows or OWN_CE.get(r) in rows) and seed not in table[r]]
        started = {r: load_json(os.path.join(run_dir(out, r, seed), "config.json")) for r in pending}
        makes_ce = any(c is not None and not c["skip_student_ce"] for r, c in started.items()
                       if r not in OWN_CE)
        want_ce = "ce" in rows and seed not in table["ce"] and not makes_ce
        for row in pending:
            if row in OWN_CE:  # its CE baseline is its own, never the shared one
                todo.append((row, seed, False))
                continue
            skip = started[row]["skip_student_ce"] if started[row] else not want_ce
            want_ce = want_ce and skip  # this run produces student_ce: nobody else has to
            todo.append((row, seed, skip))
        if want_ce:  # every selected row is finished without it: a run of its own
            todo.append(("ce", seed, False))
    return todo


# ------------------------------------------------------------------------------- the table
def collect(seeds, out, passthrough, val, selected):
    """Finished results -> {row: {seed: {metric: value, ...}}} plus warnings.

    Every row finished under `out` for these seeds is included (not only the selected ones), so
    running a subset later does not drop rows from the table; a finished run made with other
    settings is an error if selected, else left out with a warning.
    """
    table, warnings, predates = {r: {} for r in ROWS}, [], {}
    # "ce" last: its own folder is only the fallback when no distillation run carries student_ce.
    for row in [*DISTILL_ROWS, "ce"]:
        for seed in seeds:
            folder = run_dir(out, row, seed)
            res = load_json(os.path.join(folder, "results.json"))
            if res is None:
                continue
            stale, newer = settings_mismatch(res["config"],
                                             row_argv(row, seed, out, passthrough, val, True))
            if newer:
                predates[tuple(newer)] = predates.get(tuple(newer), 0) + 1
            if stale:
                msg = (f"{folder} was run with other settings ({'; '.join(stale[:3])}); use "
                       f"another --out, or delete the folder to rerun it")
                if row in selected:
                    raise SystemExit(msg)
                warnings.append(f"left out: {msg}")
                continue
            if row != "ce":  # (the ce/seed<k> folder's distilled student is not a row)
                table[row][seed] = {**_entry(res, "student"), "folder": folder,
                                    "run_seconds": res["seconds"]}
            if row in OWN_CE:
                if "student_ce" in res["models"]:
                    table[OWN_CE[row]][seed] = {**_entry(res, "student_ce"), "folder": folder,
                                                "run_seconds": 0.0}
            elif "student_ce" in res["models"] and seed not in table["ce"]:
                # The run's total time is counted once: with its row, or here for ce/seed<k>.
                table["ce"][seed] = {**_entry(res, "student_ce"), "folder": folder,
                                     "run_seconds": res["seconds"] if row == "ce" else 0.0}
    for flags, n in predates.items():  # one line per set of flags, not one per run
        warnings.append(f"{n} finished run(s) predate train.py flag(s) "
                        f"{', '.join('--' + k.replace('_', '-') for k in flags)} (run without them)")
    # Teachers must be shared within a seed (the cache at work); say so loudly if not.
    for seed in seeds:
        seen = {json.dumps({k: v for k, v in r[seed].items() if "teacher" in k})
                for row, r in table.items() if seed in r and row not in OWN_TEACHERS}
        if len(seen) > 1:
            warnings.append(f"seed {seed}: rows report different teacher accuracies, so the "
                            f"teachers were not shared (check --cache-dir and the flags after --)")
    return table, warnings


def _entry(res, stage):
    """One model's numbers from a results.json, with both teachers' for reference."""
    m, models = res["models"][stage], res["models"]
    return {**{k: m[k] for k in (*METRICS, "best_epoch")},
            **{f"{t}_{k}": models[t][k] for t in ("vit_teacher", "cnn_teacher") for k in METRICS},
            # the stage's own training + evaluation time, without the teachers
            "seconds": round(sum(h["seconds"] for h in res["history"].get(stage, [])), 1)}


def mean_std(values):
    """(mean, sample std); the std is nan for fewer than 2 values."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def fmt(values):
    m, s = mean_std(values)
    if math.isnan(m):
        return "-"
    return f"{m:.1f}" if math.isnan(s) else f"{m:.1f} ± {s:.1f}"


def claims(table):
    """The paper's ordering checks, computed from the table -> list of dicts (one per line)."""
    lines = []
    for a, b, what in CLAIMS:
        seeds = sorted(set(table[a]) & set(table[b]))  # paired: only seeds both rows have
        if not seeds:
            continue
        for metric in ("clip_acc@1", "video_acc@1"):
            va, vb = [table[a][s][metric] for s in seeds], [table[b][s][metric] for s in seeds]
            (ma, sa), (mb, sb) = mean_std(va), mean_std(vb)
            pooled = math.sqrt((sa ** 2 + sb ** 2) / 2)  # nan with one seed: no std to compare to
            diff = ma - mb
            # 0/0 (identical constant rows) is "no difference", d/0 an infinitely clear one.
            z = (0.0 if diff == 0 else math.copysign(math.inf, diff)) if pooled == 0 else diff / pooled
            lines.append({"comparison": what, "a": a, "b": b, "metric": metric, "mean_a": ma,
                          "mean_b": mb, "diff": diff, "pooled_std": pooled, "z": z,
                          "wins": sum(x > y for x, y in zip(va, vb)), "seeds": len(seeds)})
    return lines


def write_csv(path, table):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    cols = ["row", "label", "seed", *METRICS, "best_epoch",
            *[f"{t}_{k}" for t in ("vit_teacher", "cnn_teacher") for k in METRICS],
            "seconds", "folder"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for row in ROWS:
            for seed in sorted(table[row]):
                w.writerow({"row": row, "label": ROWS[row][0], "seed": seed, **table[row][seed]})


def render(table, warnings, args, passthrough, command, wall, n_run, csv_path):
    """The RESULTS.md section as markdown."""
    column = lambda r, k: [v[k] for v in table[r].values()]  # one metric of a row, over seeds
    rows = [[r, ROWS[r][0], *(fmt(column(r, k)) for k in METRICS), f"{len(table[r])}/{len(args.seeds)}"]
            for r in ROWS if table[r]]
    # Teachers: one value per seed (every row of a seed shares them), from any row that has it.
    per_seed = {s: v for r in ROWS if r not in OWN_TEACHERS for s, v in table[r].items()}
    teacher_rows = [[t, *(fmt([v[f"{t}_{k}"] for v in per_seed.values()]) for k in METRICS),
                     len(per_seed)] for t in ("vit_teacher", "cnn_teacher")]
    teacher_rows += [[f"{t} ({how}, row {r})", *(fmt(column(r, f"{t}_{k}")) for k in METRICS),
                      len(table[r])] for r, how in OWN_TEACHERS.items() if table[r]
                     for t in ("vit_teacher", "cnn_teacher")]

    def num(x, f="{:.1f}"):
        return "-" if math.isnan(x) else ("inf" if math.isinf(x) else f.format(x))

    claim_rows = [[c["comparison"], c["metric"], f"{c['a']} vs {c['b']}", num(c["mean_a"]),
                   num(c["mean_b"]), num(c["diff"], "{:+.1f}"), num(c["pooled_std"]),
                   num(c["z"], "{:+.2f}"), "-" if math.isnan(c["z"]) else "yes" if c["z"] > 2 else "no",
                   f"{c['wins']}/{c['seeds']}"] for c in claims(table)]
    config = {}
    if per_seed:  # the settings every row shares, from any finished run
        first = next(iter(per_seed.values()))["folder"]
        config = load_json(os.path.join(first, "results.json"))["config"]
    split = ("20% of the training videos held out (train.py --val-fraction 0.2)" if args.val
             else f"test split {config.get('split', '?')}")
    all_seconds = sum(v["run_seconds"] for r in table.values() for v in r.values())
    student_seconds = sum(v["seconds"] for r in table.values() for v in r.values())
    csv_rel = os.path.relpath(csv_path, os.path.dirname(os.path.abspath(args.results)))
    every = config.get("eval_every") or 0
    evaluated = (f"every {every} epochs and the last evaluated" if every else
                 "only the last epoch evaluated (--eval-every 0), so it equals the last")
    lines = [
        f"## Ablation ({'validation part of the training split' if args.val else 'test split'}, "
        f"preset `{config.get('preset', '?')}`, dataset `{config.get('dataset', '?')}`)", "",
        f"Command: `{command}`  ",
        f"Seeds: {' '.join(map(str, args.seeds))}; train.py arguments shared by every row: "
        f"`{shlex.join(passthrough) or '(defaults)'}`; student epochs {config.get('epochs', '?')}, "
        f"teacher epochs {config.get('teacher_epochs', '?')} (ViT "
        f"{config.get('vit_teacher_epochs') or config.get('teacher_epochs', '?')}); evaluated on "
        f"{split}.  ",
        f"Each cell: mean ± sample std over seeds of the last epoch's metric (clip_acc@1: the "
        f"centered view; video_acc@1: softmax averaged over {config.get('eval_clips', '?')} clips "
        f"x {config.get('eval_crops', '?')} crops); best-epoch clip_acc@1 is the best epoch's "
        f"value per seed among the evaluated epochs (picked on the evaluated split, so optimistic; "
        f"{evaluated}). Per-seed numbers: "
        f"`{csv_rel}`.", "",
        md_table(["row", "method", "clip_acc@1", "video_acc@1", "best-epoch clip_acc@1", "seeds"],
                 rows), "",
        "Teachers (trained once per seed, shared by all rows of the seed):", "",
        md_table(["teacher", "clip_acc@1", "video_acc@1", "best-epoch clip_acc@1", "seeds"],
                 teacher_rows), "",
        "Claims, computed from the runs above (std = pooled sample std of the two rows over the "
        "seeds both have, sqrt((s_A^2 + s_B^2) / 2); the seeds are paired: same teachers, same "
        "data):", "",
        md_table(["comparison", "metric", "A vs B", "mean A", "mean B", "A - B", "pooled std",
                  "(A - B) / std", "A - B > 2 std", "seeds with A > B"], claim_rows)
        if claim_rows else "(no pair of compared rows has finished)", "",
        f"Wall time: {wall:.0f} s for this invocation ({n_run} runs started, the rest were "
        f"finished before); the finished runs took {all_seconds:.0f} s in train.py in all, "
        f"{student_seconds:.0f} s of it in the student stages.  ",
        f"Machine: {machine()}.",
    ]
    if warnings:
        lines += ["", *[f"**Warning:** {w}" for w in warnings]]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    own, passthrough = argv[:cut], argv[cut + 1:]  # ours, then train.py's
    args = get_args_parser().parse_args(own)
    args.rows = [r for item in args.rows for r in item.split(",") if r]
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"unknown row(s) {unknown}; valid: {', '.join(ROWS)}")
    # Parsing the passthrough with train.py's own parser catches typos now, not hours later.
    given = vars(train.get_args_parser().parse_args(passthrough))
    defaults = vars(train.get_args_parser().parse_args([]))
    clash = [k for k in OWNED if given[k] != defaults[k]]
    if clash:
        raise SystemExit(f"ablate.py sets {', '.join('--' + k.replace('_', '-') for k in clash)} "
                         f"itself; use --seeds / --out / --val / --rows instead")
    args.out = args.out or ("runs/ablation_val" if args.val else "runs/ablation")
    args.results = args.results or (os.path.join(args.out, "RESULTS.md") if args.val else "RESULTS.md")
    csv_path = os.path.join(os.path.dirname(os.path.abspath(args.results)), "results", "ablation.csv")
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python ablate.py " + shlex.join(argv)

    t0 = time.time()
    # What is finished (and whether it was made with these settings: stale runs fail here, early).
    table, _ = collect(args.seeds, args.out, passthrough, args.val, args.rows)
    todo = plan(table, args.seeds, args.rows, args.out)
    print(f"[ablate] {len(todo)} runs to train, rows {' '.join(args.rows)}, seeds "
          f"{' '.join(map(str, args.seeds))}; finished runs under {args.out} are skipped", flush=True)
    for i, (row, seed, skip_ce) in enumerate(todo):
        targv = row_argv(row, seed, args.out, passthrough, args.val, skip_ce)
        print(f"[ablate] {i + 1}/{len(todo)} row {row} seed {seed}: python train.py "
              f"{shlex.join(targv)}", flush=True)
        try:
            train.main(targv)
        except train.NonFiniteLoss as e:  # one diverged run should not cost the other rows
            print(f"[ablate] row {row} seed {seed} diverged and is left out of the table: {e}")

    table, warnings = collect(args.seeds, args.out, passthrough, args.val, args.rows)
    wall = time.time() - t0
    write_csv(csv_path, table)
    body = render(table, warnings, args, passthrough, command, wall, len(todo), csv_path)
    write_section(args.results, "ablation", body)
    print(f"\n{body}\n\n[ablate] total wall time {wall:.0f} s; wrote {args.results} and {csv_path}")
    return table


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command; finished runs are skipped and the "
              "interrupted one continues from its last epoch")
        raise SystemExit(130)
