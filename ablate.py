"""ablate.py -- the ablation table: what each part of the method adds, over seeds (RESULTS.md).

Reading guide
-------------
Two commands. `python ablate.py --tune` picks every row's learning rate and number of epochs on
held-out training videos (never the test split); `python ablate.py` then trains every row at its
own tuned setting for every seed, on the test split, and writes the table, the paired claims with
their confidence intervals, and the box of answers on top of RESULTS.md and in the README.

    row                    train.py flags                            question it answers
    ce                     --skip-student                            what the student learns alone
    ce_matched             --skip-student, more epochs               CE given the distilled
                                                                     student's training cost
    ce_matched_teachers    --skip-student, more epochs               ... and the teachers' too
    kd_cnn                 --weighting cnn  --beta 0 --gamma 0       KD from the CNN teacher only
    kd_vit                 --weighting vit  --beta 0 --gamma 0       KD from the ViT teacher only
    uniform                --weighting uniform --beta 0 --gamma 0    both teachers, fixed 1/2 - 1/2
    entropy                --weighting entropy --beta 0 --gamma 0    confidence-only weights
    datw                   --weighting datw --beta 0 --gamma 0       Paper: DATW
    datw_sdd               --weighting datw --gamma 0                Paper: DATW + SDD (residual)
    full                   --weighting datw                          Paper: DATW + SDD + RKD
    full_direct            --weighting datw --sdd-target vit         SDD mimicking the ViT feature
    full_teachers_scratch  --teacher-init scratch                    teachers that know only the
                                                                     target split
    ce_student_zoo         --student-init pretrained --skip-student  the paper's setting: a student
    full_student_zoo       --student-init pretrained                 from the zoo, CE and the method

Tuning (`--tune`, on `--val`'s held-out 20% of the training videos, seeds 0 1 2 by default): a
coordinate search per row. First every rate of the row's grid (TUNE_RATES, by where the student
starts) at the shortest budget (TUNE_EPOCHS[0]), one factor of 2 further out while the best
rate sits on the grid's edge (at most EXTEND_GRID times); then, at the best rate, longer budgets
while the mean over seeds still improves. The row keeps its best (rate, epochs) by the mean
validation clip_acc@1 over seeds. Each grid point is an ordinary ablation folder
(runs/tune/lr<rate>_ep<epochs>/<row>/seed<k>), so rows tried at the same point share its runs, and
an interrupted search resumes. It writes results/tuned.json (what the sweep reads),
results/tuning.csv (every run) and the "tuning" section of RESULTS.md. The two compute-matched CE
rows are not tuned: they take CE's rate and as many epochs as make their training cost the full
method's, measured as seconds per epoch in the tuning runs (see `matched_epochs`).

How the rows share work (and why the comparison is paired):
- Teachers are trained once per seed: train.py caches a trained teacher under --cache-dir keyed
  by everything that changes it (the seed included, the row's flags not), so every row of a seed
  distils from the same teachers; the table warns if two rows of a seed report different ones.
- Every student of a seed starts from the same weights (seeded by (seed, "student", "init")) and
  sees the same batches and augmentations in the same epochs (seeded per epoch), whatever its
  row: differences between rows of one seed are the rows' doing.
- A CE row runs on its own (train.py --skip-student), unless a distillation run of the same seed
  has exactly its student setting (where it starts, rate, epochs): then that run trains its
  student_ce stage and the CE row is read from it (at a tuning grid point every row shares one).
- Each run lives in `<out>/<row>/seed<k>`. A run is finished when its results.json exists:
  finished runs are skipped, so the command can be rerun after an interruption; a started,
  unfinished run continues from its last epoch (train.py --resume). A finished run made with
  other settings is an error, never silently reused; a train.py flag added after a run finished is
  only reported under the table (its default is assumed).
- `--jobs N` runs N train.py processes side by side (each with --threads torch threads; its log
  in <run>/train.log); the first run of each seed trains the teachers before the others start.
  Runs go seed by seed, so a sweep stopped early (Ctrl-C or kill) holds whole seeds; `--report`
  writes the tables from what is finished without training anything.

Claims (computed, never typed in, stats.py): for each pair (A, B) the per-seed differences, their
mean, a 95% percentile bootstrap CI (10,000 resamples), the share of seeds with A > B and the
verdict: shown (CI above 0), reversed (CI below 0), not resolved.

Extra train.py arguments go after `--`: `python ablate.py --seeds 0 -- --epochs 2 --dry-run`.
Every row gets them first and its own flags after, so a row's switches and tuned setting win.
"""
import argparse
import csv
import json
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from typing import NamedTuple

import torch

import options
import plumbing
import stats
import train
from reports import get_section, machine, md_table, write_section


class Row(NamedTuple):
    label: str  # the method, as the table names it
    flags: list  # train.py flags of the row (a CE row's only choose where its student starts)
    ce: bool = False  # a CE-only row: the student_ce stage of a run, not its distilled student


KD_ONLY = ["--beta", "0", "--gamma", "0"]  # SDD and RKD off: the row is about the KD target alone
FULL = ["--weighting", "datw", "--sdd-target", "residual"]
ZOO = ["--student-init", "pretrained"]
ROWS = {
    "ce": Row("CE only (no teacher)", [], ce=True),
    "ce_matched": Row("CE only, as many epochs as the full method's student costs", [], ce=True),
    "ce_matched_teachers": Row("CE only, as many epochs as the full method costs with its teachers",
                               [], ce=True),
    "kd_cnn": Row("KD, CNN teacher only", ["--weighting", "cnn", *KD_ONLY]),
    "kd_vit": Row("KD, ViT teacher only", ["--weighting", "vit", *KD_ONLY]),
    "uniform": Row("KD, both teachers, uniform weights", ["--weighting", "uniform", *KD_ONLY]),
    "entropy": Row("KD, both teachers, entropy-only weights", ["--weighting", "entropy", *KD_ONLY]),
    "datw": Row("DATW", ["--weighting", "datw", *KD_ONLY]),
    "datw_sdd": Row("DATW + SDD", [*FULL, "--gamma", "0"]),
    "full": Row("DATW + SDD + RKD (full method)", FULL),
    "full_direct": Row("full method, SDD predicts the ViT feature (direct mimicry)",
                       ["--weighting", "datw", "--sdd-target", "vit"]),
    # The benchmark's own lesson: the same method with teachers that know only the target split.
    "full_teachers_scratch": Row("full method, teachers trained from scratch on the target split",
                                 [*FULL, "--teacher-init", "scratch"]),
    # The paper's setting: the student starts from the zoo too, with its own CE baseline.
    "ce_student_zoo": Row("CE only, student from the zoo", ZOO, ce=True),
    "full_student_zoo": Row("full method, student from the zoo", [*FULL, *ZOO]),
}
OWN_TEACHERS = {"full_teachers_scratch": "scratch"}  # rows whose teachers are not the shared ones
# Rows whose setting is derived from other rows' tuned settings, never tuned themselves.
MATCHED = {"ce_matched": False, "ce_matched_teachers": True}  # row -> teachers' cost counted
# (A, B, the paper's claim it tests); B = "vit_teacher" is the ViT teacher of the same seed.
CLAIMS = [("full", "ce", "dual-teacher KD beats CE, each at its best"),
          ("full", "ce_matched", "... and CE given the same student-training compute"),
          ("full", "ce_matched_teachers", "... and CE given the teachers' fine-tuning too"),
          ("datw", "kd_cnn", "two teachers beat the CNN teacher alone (KD only)"),
          ("datw", "kd_vit", "two teachers beat the ViT teacher alone (KD only)"),
          ("datw", "uniform", "DATW beats uniform teacher weights"),
          ("datw_sdd", "datw", "SDD adds to DATW"),
          ("full", "datw_sdd", "RKD adds to DATW + SDD"),
          ("full", "full_direct", "SDD's residual target beats direct ViT-feature mimicry"),
          ("full", "full_teachers_scratch", "pretrained teachers beat teachers from scratch"),
          ("full_student_zoo", "ce_student_zoo", "distillation helps a pretrained student"),
          ("full", "vit_teacher", "the student reaches its ViT teacher")]
METRICS = ("clip_acc@1", "video_acc@1", "best_clip_acc@1")
# Seeds per row when --seeds is not given: more for the rows the main claims rest on.
ROW_SEEDS = {r: 10 if r in ("ce", "ce_matched", "uniform", "datw", "full", "full_direct") else 5
             for r in ROWS}
TUNE_SEEDS = [0, 1, 2]
# Tuning grids: one per student initialization (every row with that student gets the same grid),
# centred on train.py's default rate for it; budgets tried in order while validation improves.
TUNE_RATES = {"scratch": (2e-3, 4e-3, 8e-3, 1.6e-2), "pretrained": (5e-4, 1e-3, 2e-3, 4e-3)}
TUNE_EPOCHS = (15, 30, 60)
EXTEND_GRID = 2  # times a row's grid may grow past an edge its best rate sits on
# train.py flags that ablate.py sets itself: passing them after `--` would be overridden.
OWNED = ("seed", "out", "resume", "val_fraction", "skip_student_ce", "skip_student", "weighting",
         "sdd_target")
# Settings that may differ between the run on disk and now without changing its numbers
# (--pretrained-dir: where the same published files lie; --check-weights never trains).
NOT_RESULTS = ("resume", "workers", "preload", "device", "skip_student_ce", "cache_dir",
               "pretrained_dir", "check_weights")


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog="train.py arguments after `--` are passed to every row.")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="run seeds (train.py --seed) of every row (default: 0 .. 9 for ce, ce_matched, "
                        "uniform, datw, full, full_direct; 0 .. 4 for the others; --tune: 0 1 2)")
    p.add_argument("--rows", nargs="+", default=list(ROWS),
                   help=f"rows to run, space or comma separated (default: all): {', '.join(ROWS)}")
    p.add_argument("--out", default=None,
                   help="run folders <out>/<row>/seed<k> (default runs/ablation, with --val "
                        "runs/ablation_val, with --tune runs/tune/lr<rate>_ep<epochs>)")
    p.add_argument("--results", default=None,
                   help="markdown file for the tables (default RESULTS.md, with --val "
                        "<out>/RESULTS.md); the CSVs and tuned.json go to results/ beside it")
    p.add_argument("--val", action="store_true",
                   help="evaluate on 20%% of the training videos (train.py --val-fraction 0.2), "
                        "not the test split")
    p.add_argument("--tune", action="store_true",
                   help="pick each row's rate and epochs on --val's held-out videos (implies --val) "
                        "and write results/tuned.json, which later sweeps read")
    p.add_argument("--tuned", default=None,
                   help="per-row rate and epochs (default: results/tuned.json beside --results, "
                        "if it exists; 'none': train.py's defaults for every row)")
    p.add_argument("--tune-rates", type=float, nargs="+", default=None,
                   help="learning-rate grid for every row (default: by student init, "
                        + ", ".join(f"{k} {' '.join(f'{r:g}' for r in v)}" for k, v in TUNE_RATES.items()) + ")")
    p.add_argument("--tune-epochs", type=int, nargs="+", default=list(TUNE_EPOCHS),
                   help="budgets, tried in this order while validation improves (default: %(default)s)")
    p.add_argument("--report", action="store_true",
                   help="write the tables from the runs finished so far and train nothing (e.g. "
                        "while a sweep runs, or to stop a long one at a seed boundary)")
    p.add_argument("--recorded", action="store_true",
                   help="also count the runs recorded in results/ablation.csv whose folders are gone "
                        "(a fresh clone, a cleaned disk) if their row's rate and epochs are today's "
                        "(give the recorded sweep's arguments after --): they are not retrained; the "
                        "table warns if a seed's new runs got other teachers than the recorded ones")
    p.add_argument("--jobs", type=int, default=1,
                   help="train.py processes side by side (default 1: in this process)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per process (default: torch's choice with --jobs 1, else "
                        "cores / jobs); oversubscribed threads slow every step")
    return p


# ------------------------------------------------------------------------------- run folders
def run_dir(out, row, seed):
    return os.path.join(out, row, f"seed{seed}")


def tune_dir(out, lr, epochs):
    """The ablation folder of one tuning grid point."""
    return os.path.join(out, f"lr{lr:g}_ep{epochs}")


def load_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def setting_flags(setting):
    """{"lr": 0.004, "epochs": 30} -> ["--lr", "0.004", "--epochs", "30"] ({} or None -> [])."""
    return [f for k in ("lr", "epochs") if k in (setting or {}) for f in (f"--{k}", f"{setting[k]:g}")]


def row_argv(row, seed, out, passthrough, val, skip_ce, settings=None):
    """train.py arguments of one run: passthrough first, then the row's flags and its tuned
    setting (which win). A CE row's own run stops after its CE stage (--skip-student)."""
    folder = run_dir(out, row, seed)
    argv = [*passthrough, *ROWS[row].flags, *setting_flags((settings or {}).get(row)),
            "--seed", str(seed), "--out", folder]
    if val:
        argv += ["--val-fraction", "0.2"]
    if ROWS[row].ce:
        argv.append("--skip-student")
    elif skip_ce:
        argv.append("--skip-student-ce")
    if os.path.exists(os.path.join(folder, "config.json")):
        argv.append("--resume")  # started before and not finished: continue from its checkpoints
    return argv


def resolved(argv):
    """train.py's arguments as its main() resolves them, before config.json is written."""
    parsed = train.get_args_parser().parse_args(argv)
    options.resolve_defaults(parsed)
    return parsed


def student_setting(config):
    """What a student's training depends on beyond the shared flags: (init, lr, epochs)."""
    get = config.get if isinstance(config, dict) else lambda k: getattr(config, k)
    return get("student_init"), get("lr"), get("epochs")


def settings_mismatch(saved_config, argv):
    """-> (settings where a finished run differs from what `argv` would run now,
           train.py flags added since that run, which it therefore ran without).

    A flag the run predates is not an error: a new flag's default normally keeps the old
    behaviour, and hours of finished runs should not be lost to an unrelated new option. It is
    reported, so a reader can judge.
    """
    want = json.loads(json.dumps(vars(resolved(argv)), default=str))
    want = {k: v for k, v in want.items() if k not in NOT_RESULTS}
    saved_config = plumbing.current_names(saved_config)  # a run made before flags were renamed
    differ = [f"{k}: {saved_config[k]!r} on disk, {v!r} now" for k, v in want.items()
              if k in saved_config and saved_config[k] != v]
    return differ, sorted(k for k in want if k not in saved_config)


def plan(table, seeds, rows, out, passthrough=(), val=False, settings=None):
    """-> list of (row, seed, skip_ce) to run now, seed-major, in table order. `seeds`: a list
    for every row, or {row: its seeds}.

    `table` holds the finished runs (collect()). A CE row comes from a distillation run of the
    same seed with its student setting (a started run that trains student_ce, else the first
    not-yet-started one), or else from a run of its own. A started run keeps the
    --skip-student-ce it started with (train.py --resume refuses other settings).
    """
    key = {r: student_setting(resolved(row_argv(r, 0, out, list(passthrough), val, False, settings)))
           for r in rows}
    per_row = seeds if isinstance(seeds, dict) else {r: seeds for r in rows}
    todo = []
    for seed in sorted({s for r in rows for s in per_row[r]}):
        here = [r for r in rows if seed in per_row[r]]
        distill = [r for r in here if not ROWS[r].ce and seed not in table[r]]
        started = {r: load_json(os.path.join(run_dir(out, r, seed), "config.json")) for r in distill}
        carries = {r: started[r] is not None and not started[r]["skip_student_ce"] for r in distill}
        alone = []
        for c in (r for r in here if ROWS[r].ce and seed not in table[r]):
            own = load_json(os.path.join(run_dir(out, c, seed), "config.json")) is not None
            match = [r for r in distill if key[r] == key[c] and (started[r] is None or carries[r])]
            if own or not match:  # (a CE row's own run, once started, is finished as it began)
                alone.append(c)
            else:  # prefer a run that already produces it
                carries[next((r for r in match if carries[r]), match[0])] = True
        todo += [(r, seed, not carries[r]) for r in distill] + [(c, seed, False) for c in alone]
    return todo


# ------------------------------------------------------------------------------------ running
def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_all(todo, argvs, jobs=1, threads=None):
    """Run train.py for every planned run: in this process (jobs = 1) or as up to `jobs`
    subprocesses with `threads` torch threads each. The first run of each seed (and teacher
    init) goes alone, so the others find its teachers in the cache instead of training them too."""
    if jobs <= 1:
        for i, ((row, seed, _), argv) in enumerate(zip(todo, argvs)):
            print(f"[ablate] {i + 1}/{len(todo)} row {row} seed {seed}: python train.py "
                  f"{shlex.join(argv)}", flush=True)
            try:
                train.main(argv)
            except train.NonFiniteLoss as e:  # one diverged run should not cost the other rows
                print(f"[ablate] row {row} seed {seed} diverged and is left out of the table: {e}")
        return
    # `kill` (SIGTERM; a background job ignores Ctrl-C's SIGINT) stops the sweep as Ctrl-C does:
    # the children are terminated below, and a rerun resumes each from its last epoch.
    signal.signal(signal.SIGTERM, _interrupt)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads or max(1, (os.cpu_count() or 1) // jobs))}
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py")
    gate = lambda job: (job[0][1], OWN_TEACHERS.get(job[0][0], "pretrained"))  # (seed, teachers)
    pending, running, opened, closed = list(zip(todo, argvs)), {}, set(), set()
    t0, done = time.time(), 0
    try:
        while pending or running:
            for job in list(pending):
                if len(running) >= jobs:
                    break
                if gate(job) in opened and gate(job) not in closed:
                    continue  # this seed's teachers are being trained by its first run
                (row, seed, _), argv = job
                folder = argv[argv.index("--out") + 1]
                os.makedirs(folder, exist_ok=True)
                log = open(os.path.join(folder, "train.log"), "a")
                running[subprocess.Popen([sys.executable, script, *argv], stdout=log,
                                         stderr=subprocess.STDOUT, env=env)] = (job, log, time.time())
                opened.add(gate(job))
                pending.remove(job)
            time.sleep(1)
            for proc in [p for p in running if p.poll() is not None]:
                job, log, start = running.pop(proc)
                log.close()
                closed.add(gate(job))
                done += 1
                (row, seed, _), argv = job
                folder = argv[argv.index("--out") + 1]
                res = load_json(os.path.join(folder, "results.json"))
                stage = "student_ce" if "--skip-student" in argv else "student"  # a CE-only run
                what = (f"clip_acc@1 {res['models'][stage]['clip_acc@1']:.1f}" if res else
                        f"FAILED (exit code {proc.returncode}; see {folder}/train.log)")
                left = (time.time() - t0) / done * (len(todo) - done)
                print(f"[ablate] {done}/{len(todo)} {folder}: {what} in {time.time() - start:.0f} s; "
                      f"about {left / 60:.0f} min left", flush=True)
    finally:  # Ctrl-C: stop the children too (each resumes from its last epoch on a rerun)
        for proc in running:
            proc.terminate()


# ------------------------------------------------------------------------------- the table
def collect(seeds, out, passthrough, val, selected, settings=None, recorded=None):
    """Finished results -> {row: {seed: {metric: value, ...}}} plus warnings.

    Every row finished under `out` for these seeds is included (not only the selected ones), so
    running a subset later does not drop rows from the table; a finished run made with other
    settings is an error if selected, else left out with a warning. A CE row is read from its own
    run, else from a distillation run of its seed with its student setting. `recorded`: a CSV
    written by write_csv; its runs fill the (row, seed)s with no finished folder, if their rate
    and epochs are the row's setting now.
    """
    table, warnings, predates = {r: {} for r in ROWS}, [], {}
    key = {r: student_setting(resolved(row_argv(r, 0, out, passthrough, val, False, settings)))
           for r in ROWS if ROWS[r].ce and (r not in MATCHED or r in (settings or {}))}
    for row in sorted(ROWS, key=lambda r: not ROWS[r].ce):  # CE rows' own runs first
        for seed in seeds:
            folder = run_dir(out, row, seed)
            res = load_json(os.path.join(folder, "results.json"))
            if res is None:
                continue
            stale, newer = settings_mismatch(res["config"], row_argv(row, seed, out, passthrough, val,
                                                                     True, settings))
            if newer:
                predates[tuple(newer)] = predates.get(tuple(newer), 0) + 1
            if stale:
                msg = (f"{folder} was run with other settings ({'; '.join(stale[:3])}); use "
                       f"another --out, or delete the folder to rerun it")
                if row in selected:
                    raise SystemExit(msg)
                warnings.append(f"left out: {msg}")
                continue
            stage = "student_ce" if ROWS[row].ce else "student"
            table[row][seed] = {**_entry(res, stage), "folder": folder, "run_seconds": res["seconds"]}
            if not ROWS[row].ce and "student_ce" in res["models"]:  # it carries CE rows
                for c, k in key.items():
                    if k == student_setting(res["config"]) and seed not in table[c]:
                        table[c][seed] = {**_entry(res, "student_ce"), "folder": folder, "run_seconds": 0.0}
    if recorded:
        n = fill_from_record(table, recorded, seeds, out, passthrough, val, settings)
        if n:
            warnings.append(f"{n} run(s) read from {recorded} (their folders are gone; not retrained)")
    for flags, n in predates.items():  # one line per set of flags, not one per run
        warnings.append(f"{n} finished run(s) predate train.py flag(s) "
                        f"{', '.join('--' + k.replace('_', '-') for k in flags)} (run without them)")
    # Teachers must be shared within a seed (the cache at work); say so loudly if not.
    for seed in seeds:
        seen = {json.dumps({k: v for k, v in r[seed].items() if "teacher_" in k and "seconds" not in k})
                for row, r in table.items() if seed in r and row not in OWN_TEACHERS}
        if len(seen) > 1:
            warnings.append(f"seed {seed}: rows report different teacher accuracies, so the "
                            f"teachers were not shared (check --cache-dir and the flags after --)")
    return table, warnings


def seeds_found(out, recorded=None):
    """Seeds with a run folder of any row under `out`, or a run in the `recorded` CSV."""
    found = {int(d[4:]) for r in ROWS if os.path.isdir(os.path.join(out, r))
             for d in os.listdir(os.path.join(out, r)) if d.startswith("seed") and d[4:].isdigit()}
    if recorded and os.path.exists(recorded):
        with open(recorded, newline="") as f:
            found |= {int(rec["seed"]) for rec in csv.DictReader(f)}
    return found


def fill_from_record(table, path, seeds, out, passthrough, val, settings):
    """Add the runs of a results CSV that `table` lacks and that match today's settings -> count.

    The CSV keeps each run's rate and epochs, not the other train.py flags: those are taken to be
    today's `passthrough` (the same arguments after `--` as the recorded sweep)."""
    if not os.path.exists(path):
        raise SystemExit(f"--recorded: no {path}; it is written by a sweep (python ablate.py)")
    ints = ("seed", "epochs", "best_epoch", "videos")
    n = 0
    with open(path, newline="") as f:
        for rec in csv.DictReader(f):
            row, seed = rec["row"], int(rec["seed"])
            if row not in ROWS or seed not in seeds or seed in table[row] or "lr" not in rec:
                continue
            _, lr, epochs = student_setting(resolved(row_argv(row, seed, out, passthrough, val, False, settings)))
            if (float(rec["lr"]), int(rec["epochs"])) != (lr, epochs):
                continue  # made with another setting: not this table's
            entry = {k: (int(v) if k in ints else v if k == "folder" else float(v))
                     for k, v in rec.items() if k not in ("row", "label") and v != ""}
            entry.setdefault("run_seconds", entry.get("seconds", 0.0))
            table[row][seed] = entry
            n += 1
    return n


def _entry(res, stage):
    """One model's numbers from a results.json, with both teachers' and the costs."""
    m, models, history = res["models"][stage], res["models"], res["history"].get(stage, [])
    config, stage_seconds = res["config"], res.get("stage_seconds", {})
    return {**{k: m[k] for k in (*METRICS, "best_epoch")},
            **{f"{t}_{k}": models[t][k] for t in ("vit_teacher", "cnn_teacher") for k in METRICS},
            "lr": config["lr"], "epochs": config["epochs"],
            "videos": next((h["videos"] for h in reversed(history) if "videos" in h), None),
            # the stage's own training + evaluation time, without the teachers
            "seconds": round(sum(h["seconds"] for h in history), 1),
            # the teachers' time in this run: their fine-tuning, or the moment of loading them from the cache
            "teacher_seconds": sum(stage_seconds.get(k, 0.0) for k in ("vit_teacher", "cnn_teacher"))}


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


def paired(table, a, b, metric="clip_acc@1"):
    """-> (seeds both rows have, A's values, B's values); B = "vit_teacher": A's seed's teacher."""
    if b == "vit_teacher":
        seeds = sorted(table[a])
        return seeds, [table[a][s][metric] for s in seeds], [table[a][s][f"vit_teacher_{metric}"] for s in seeds]
    seeds = sorted(set(table[a]) & set(table[b]))
    return seeds, [table[a][s][metric] for s in seeds], [table[b][s][metric] for s in seeds]


def claims(table, metrics=("clip_acc@1", "video_acc@1")):
    """The paper's claims as paired comparisons over seeds -> list of dicts (one per line)."""
    lines = []
    for a, b, what in CLAIMS:
        for metric in metrics:
            seeds, va, vb = paired(table, a, b, metric)
            if not seeds:
                continue
            d = [x - y for x, y in zip(va, vb)]
            lo, hi = stats.paired_bootstrap_ci(d)
            lines.append({"claim": what, "a": a, "b": b, "metric": metric, "seeds": len(seeds),
                          "mean_a": statistics.fmean(va), "mean_b": statistics.fmean(vb),
                          "diff": statistics.fmean(d), "lo": lo, "hi": hi,
                          "share": stats.share_greater(va, vb), "verdict": stats.verdict(lo, hi, len(d))})
    return lines


READING = {"shown": "yes, on this benchmark", "reversed": "no: the opposite holds here",
           "not resolved": "unknown: the seeds do not separate the two",
           "too few seeds": f"not measured yet: fewer than {stats.MIN_SEEDS} seeds"}


def box(table, where):
    """The answers on top: one line per claim (clip_acc@1), measured or not yet -> markdown."""
    done = {(c["a"], c["b"]): c for c in claims(table, ("clip_acc@1",))}
    rows = []
    for a, b, what in CLAIMS:
        c = done.get((a, b))
        rows.append([what, f"`{a}` - `{b}`", "-", "-", "-", "**not run**", "no finished runs of both rows"]
                    if c is None else
                    [what, f"`{a}` - `{b}`", f"{c['diff']:+.1f}", f"[{c['lo']:+.1f}, {c['hi']:+.1f}]",
                     f"{c['share'] * c['seeds']:g}/{c['seeds']}", f"**{c['verdict']}**", READING[c["verdict"]]])
    return "\n".join([
        f"What the benchmark says about the paper's claims ({where}; clip_acc@1 points; each row "
        f"at its own tuned rate and epochs; paired seeds, 95% percentile bootstrap CI of the mean "
        f"difference, {stats.RESAMPLES:,} resamples; shown = CI above 0, reversed = below 0):", "",
        md_table(["claim", "rows (A - B)", "A - B", "95% CI", "seeds A > B", "verdict", "reading"], rows)])


def write_csv(path, table):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    cols = ["row", "label", "seed", "lr", "epochs", *METRICS, "best_epoch", "videos",
            *[f"{t}_{k}" for t in ("vit_teacher", "cnn_teacher") for k in METRICS],
            "seconds", "run_seconds", "folder"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for row in ROWS:
            for seed in sorted(table[row]):
                w.writerow({"row": row, "label": ROWS[row].label, "seed": seed, **table[row][seed]})


def seeds_text(seeds):
    """'0 1 2', or for per-row seeds '0-9 (ce, full, ...), 0-4 (the others)'."""
    if not isinstance(seeds, dict):
        return " ".join(map(str, seeds))
    groups = {}
    for r, ss in seeds.items():
        groups.setdefault(tuple(ss), []).append(r)
    span = lambda ss: f"{ss[0]}-{ss[-1]}" if list(ss) == list(range(ss[0], ss[-1] + 1)) else " ".join(map(str, ss))
    return "; ".join(f"{span(ss)} ({', '.join(rs)})" for ss, rs in sorted(groups.items(), key=lambda g: -len(g[0])))


def num(x, f="{:.1f}"):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f.format(x)


def column(table, row, key):
    """One metric of a row, over its seeds."""
    return [v[key] for v in table[row].values()]


def shared_teachers(table):
    """{seed: an entry of that seed from a row that distils from the shared teachers}: every row
    of a seed shares them, so any one of them gives the seed's teachers."""
    return {s: v for r in ROWS if r not in OWN_TEACHERS for s, v in table[r].items()}


def finished_config(table):
    """The settings every row shares (under today's names), from any finished run on disk."""
    for v in shared_teachers(table).values():
        res = load_json(os.path.join(v["folder"], "results.json"))
        if res:
            return plumbing.current_names(res["config"])
    return {}


def row_lines(table):
    """The table's rows: rate, epochs, clip and video accuracy over seeds, sampling error, seeds."""
    def spread(r):  # the evaluation split's own noise at the row's mean accuracy
        p, n = mean_std(column(table, r, "clip_acc@1"))[0] / 100, next(iter(table[r].values()))["videos"]
        return num(100 * stats.sampling_error(p, n)) if n else "-"

    return [[r, ROWS[r].label, "/".join(sorted({f"{v:g}" for v in column(table, r, "lr")})),
             "/".join(sorted({str(v) for v in column(table, r, "epochs")})),
             *(fmt(column(table, r, k)) for k in METRICS[:2]), spread(r), len(table[r])]
            for r in ROWS if table[r]]


def teacher_lines(table):
    """The teachers' rows: one value per seed from the shared teachers, then each row with
    teachers of its own (OWN_TEACHERS)."""
    per_seed = shared_teachers(table)
    lines = [[t, *(fmt([v[f"{t}_{k}"] for v in per_seed.values()]) for k in METRICS[:2]),
              len(per_seed)] for t in ("vit_teacher", "cnn_teacher")]
    return lines + [[f"{t} ({how}, row {r})", *(fmt(column(table, r, f"{t}_{k}")) for k in METRICS[:2]),
                     len(table[r])] for r, how in OWN_TEACHERS.items() if table[r]
                    for t in ("vit_teacher", "cnn_teacher")]


def render(table, warnings, args, passthrough, command, wall, n_run, csv_path):
    """The RESULTS.md section as markdown."""
    rows, teacher_rows, config = row_lines(table), teacher_lines(table), finished_config(table)
    claim_rows = [[c["claim"], c["metric"], f"{c['a']} - {c['b']}", num(c["mean_a"]), num(c["mean_b"]),
                   num(c["diff"], "{:+.1f}"), f"[{c['lo']:+.1f}, {c['hi']:+.1f}]",
                   f"{c['share'] * c['seeds']:g}/{c['seeds']}", c["verdict"]] for c in claims(table)]
    split = ("20% of the training videos held out (train.py --val-fraction 0.2)" if args.val
             else f"test split {config.get('split', '?')}")
    all_seconds = sum(v["run_seconds"] for r in table.values() for v in r.values())
    student_seconds = sum(v["seconds"] for r in table.values() for v in r.values())
    csv_rel = os.path.relpath(csv_path, os.path.dirname(os.path.abspath(args.results)))
    lines = [
        f"## Ablation ({'validation part of the training split' if args.val else 'test split'}, "
        f"preset `{config.get('preset', '?')}`, dataset `{config.get('dataset', '?')}`)", "",
        f"Command: `{command}`  ",
        f"Seeds: {seeds_text({r: sorted(table[r]) for r in ROWS if table[r]})}; train.py arguments shared by every row: "
        f"`{shlex.join(passthrough) or '(defaults)'}`; each row's rate and epochs: "
        f"{'`' + os.path.relpath(args.tuned) + '` (python ablate.py --tune)' if args.tuned else 'train.py defaults'}; "
        f"teacher epochs {config.get('cnn_teacher_epochs', '?')} (ViT "
        f"{config.get('vit_teacher_epochs') or config.get('cnn_teacher_epochs', '?')}); evaluated on "
        f"{split}.  ",
        f"Each cell: mean ± sample std over seeds of the last epoch's metric (clip_acc@1: the "
        f"centered view; video_acc@1: softmax averaged over {config.get('eval_clips', '?')} clips "
        f"x {config.get('eval_crops', '?')} crops). Sampling error: the evaluation split's own "
        f"noise on the row's mean clip_acc@1, sqrt(p(1-p)/n) over its n videos, to set beside the "
        f"spread over seeds. Per-seed numbers: `{csv_rel}`.", "",
        md_table(["row", "method", "lr", "epochs", "clip_acc@1", "video_acc@1", "sampling error",
                  "seeds"], rows), "",
        "Teachers (trained once per seed, shared by all rows of the seed):", "",
        md_table(["teacher", "clip_acc@1", "video_acc@1", "seeds"], teacher_rows), "",
        f"Claims, computed from the runs above (paired by seed: A - B per seed, its mean, the 95% "
        f"percentile bootstrap CI of that mean over {stats.RESAMPLES:,} resamples of the seeds, "
        f"the seeds where A > B, and the verdict: shown = CI above 0, reversed = CI below 0):", "",
        md_table(["claim", "metric", "rows (A - B)", "mean A", "mean B", "A - B", "95% CI", "seeds A > B",
                  "verdict"], claim_rows) if claim_rows else "(no pair of compared rows has finished)", "",
        f"Wall time: {wall:.0f} s for this invocation ({n_run} runs started, the rest were "
        f"finished before); the finished runs took {all_seconds:.0f} s in train.py in all, "
        f"{student_seconds:.0f} s of it in the student stages.  ",
        f"Machine: {machine()}.",
    ]
    if warnings:
        lines += ["", *[f"**Warning:** {w}" for w in warnings]]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ tuning
def tune_means(points, row):
    """{(lr, epochs): {row: {seed: entry}}} -> {(lr, epochs): mean validation clip_acc@1} of a row."""
    return {pt: statistics.fmean(v["clip_acc@1"] for v in t[row].values())
            for pt, t in points.items() if t.get(row)}


def matched_epochs(points, chosen, with_teachers):
    """Epochs of CE that cost what the full method costs at its tuned setting.

    Costs are seconds per epoch measured in the tuning runs (median over every run of the full
    method's student stage and of the CE stage; they run side by side with other jobs, so this
    is wall time under the sweep's own load); with_teachers adds the median over seeds of the
    teachers' fine-tuning (the run of each seed that trained them, not one that loaded them)."""
    per_epoch = lambda row: statistics.median(v["seconds"] / v["epochs"] for t in points.values()
                                              for v in t.get(row, {}).values())
    s_full, s_ce = per_epoch("full"), per_epoch("ce")
    cost = chosen["full"]["epochs"] * s_full
    if with_teachers:
        seeds = {s for t in points.values() for r in t.values() for s in r}
        cost += statistics.median(max(v["teacher_seconds"] for t in points.values() for r, rv in t.items()
                                      if r not in OWN_TEACHERS for s2, v in rv.items() if s2 == s)
                                  for s in seeds)
    return max(1, round(cost / s_ce)), {"full_s_per_epoch": round(s_full, 3), "ce_s_per_epoch": round(s_ce, 3)}


def tune(args, passthrough, command):
    """The coordinate search of the reading guide -> the chosen settings (also written)."""
    rows = [r for r in args.rows if r not in MATCHED]
    init = {r: student_setting(resolved([*passthrough, *ROWS[r].flags]))[0] for r in rows}
    grid = {r: list(args.tune_rates or TUNE_RATES[init[r]]) for r in rows}  # grows at its edges
    points = {}  # (lr, epochs) -> that grid point's table
    # Rows tuned by an earlier --tune (another --rows) keep their choice and their grid points.
    earlier = load_json(args.tuned) or {}
    keep_matched = not {"full", "ce"} & set(rows)  # their epochs rest on full's and ce's costs
    kept = {r: c for r, c in earlier.get("rows", {}).items()
            if r not in rows and (r not in MATCHED or keep_matched)}
    t0 = time.time()
    best_lr = search_rates(args, passthrough, rows, grid, points)
    climb_budgets(args, passthrough, best_lr, points)
    chosen = choose(rows, points)
    cost = earlier.get("cost", {}) if keep_matched else {}
    if "full" in chosen and "ce" in chosen:
        cost = add_matched_rows(chosen, points)
    budgets = args.tune_epochs
    base = results_dir(args)
    os.makedirs(base, exist_ok=True)
    commands = [*earlier.get("commands", [earlier["command"]] if "command" in earlier else []), command]
    tuned = {"commands": commands if kept else [command], "seeds": args.seeds,
             "rates": {**{r: v for r, v in earlier.get("rates", {}).items() if r in kept},
                       **{r: list(grid[r]) for r in rows}},
             "epochs": budgets, "metric": "mean validation clip_acc@1 over seeds (--val-fraction 0.2)",
             "cost": cost, "wall_seconds": round(time.time() - t0) + (earlier.get("wall_seconds", 0) if kept else 0),
             "rows": {r: c for r, c in {**kept, **chosen}.items()}}
    with open(args.tuned, "w") as f:
        json.dump(tuned, f, indent=1)
    write_tuning_record(args, tuned, points, rows, kept, command, os.path.join(base, "tuning.csv"))
    print(f"[ablate --tune] wrote {args.tuned}; {time.time() - t0:.0f} s")
    return tuned


def tune_round(args, passthrough, wanted, points):
    """Train the runs of one round of the search (finished ones are skipped) and put their grid
    points' tables into `points`. wanted: {row: [(lr, epochs), ...]}."""
    by_point = {}
    for r, pts in wanted.items():
        for pt in pts:
            by_point.setdefault(pt, []).append(r)
    todo, argvs, outs = [], [], {}
    for (lr, ep), rs in sorted(by_point.items()):
        out = tune_dir(args.out, lr, ep)
        extra = [*passthrough, "--lr", f"{lr:g}", "--epochs", str(ep)]
        table, _ = collect(args.seeds, out, extra, True, rs)
        for job in plan(table, args.seeds, rs, out, extra, True):
            todo.append(job), argvs.append(row_argv(job[0], job[1], out, extra, True, job[2]))
        outs[(lr, ep)] = (out, extra, rs)
    # seed-major across grid points: each seed's first run trains its teachers early
    order = sorted(range(len(todo)), key=lambda i: todo[i][1])
    print(f"[ablate --tune] {len(todo)} runs to train at {len(by_point)} grid points", flush=True)
    run_all([todo[i] for i in order], [argvs[i] for i in order], args.jobs, args.threads)
    for pt, (out, extra, rs) in outs.items():
        points[pt] = {**points.get(pt, {}), **{r: v for r, v in collect(args.seeds, out, extra, True, rs)[0].items() if v}}


def search_rates(args, passthrough, rows, grid, points):
    """Every rate of each row's grid at the shortest budget -> {row: its best rate, or None}.

    A best rate at the grid's edge says the optimum may lie beyond it: the grid (changed in
    place) grows by the next factor of 2 on that side, at most EXTEND_GRID times per row, so no
    row is held back by where the grid happened to stop."""
    epochs = args.tune_epochs[0]
    tune_round(args, passthrough, {r: [(lr, epochs) for lr in grid[r]] for r in rows}, points)
    best_lr = lambda r: max((lr for lr in grid[r] if (lr, epochs) in tune_means(points, r)),
                            key=lambda lr: tune_means(points, r)[(lr, epochs)], default=None)
    for _ in range(EXTEND_GRID):
        edge = {}
        for r in rows:
            lr, g = best_lr(r), sorted(grid[r])
            if lr is not None and len(g) > 1 and lr in (g[0], g[-1]):
                edge[r] = lr * 2 if lr == g[-1] else lr / 2
        if not edge:
            break
        for r, lr in edge.items():
            grid[r].append(lr)
        tune_round(args, passthrough, {r: [(lr, epochs)] for r, lr in edge.items()}, points)
    return {r: best_lr(r) for r in rows}


def climb_budgets(args, passthrough, best_lr, points):
    """At each row's best rate, the next budget of --tune-epochs while the mean still improves."""
    budgets = args.tune_epochs
    climbing = {r: 0 for r, lr in best_lr.items() if lr is not None}  # row -> index of its last budget
    while climbing:
        tune_round(args, passthrough, {r: [(best_lr[r], budgets[i + 1])] for r, i in climbing.items()
                                       if i + 1 < len(budgets)}, points)
        nxt = {}
        for r, i in climbing.items():
            if i + 1 >= len(budgets):
                continue
            m = tune_means(points, r)
            if m.get((best_lr[r], budgets[i + 1]), -math.inf) > m.get((best_lr[r], budgets[i]), math.inf):
                nxt[r] = i + 1  # still improving: try the next budget
        climbing = nxt


def choose(rows, points):
    """Each row's grid point with the best mean over seeds -> {row: {"lr", "epochs", ...}}."""
    chosen = {}
    for r in rows:
        m = tune_means(points, r)
        if m:
            (lr, ep), val = max(m.items(), key=lambda kv: kv[1])
            vals = [v["clip_acc@1"] for v in points[(lr, ep)][r].values()]
            chosen[r] = {"lr": lr, "epochs": ep, "val_clip_acc@1": round(val, 2),
                         "val_std": round(mean_std(vals)[1], 2), "seeds": len(vals)}
    return chosen


def add_matched_rows(chosen, points):
    """The compute-matched CE rows into `chosen` (CE's rate, the full method's cost) -> the costs."""
    for r, with_teachers in MATCHED.items():
        epochs, cost = matched_epochs(points, chosen, with_teachers)
        chosen[r] = {"lr": chosen["ce"]["lr"], "epochs": epochs,
                     "how": f"CE at {epochs} epochs costs what the full method's "
                            f"{chosen['full']['epochs']} epochs cost" + (" with its teachers" if with_teachers else "")}
    return cost


def write_tuning_record(args, tuned, points, rows, kept, command, csv_path):
    """results/tuning.csv (every run of every grid point, the kept rows' read back from the
    earlier file) and the tuning section of RESULTS.md."""
    for (lr, ep), t in read_tuning_csv(csv_path, set(kept)).items():  # the kept rows' grid points
        points.setdefault((lr, ep), {}).update(t)
    rows = [r for r in ROWS if r in rows or (r in kept and r not in MATCHED)]
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "lr", "epochs", "seed", "clip_acc@1", "video_acc@1", "folder"])
        for (lr, ep), t in sorted(points.items()):
            for r in ROWS:
                for seed, v in sorted(t.get(r, {}).items()):
                    w.writerow([r, f"{lr:g}", ep, seed, v["clip_acc@1"], v["video_acc@1"], v["folder"]])
    write_section(args.results, "tuning", render_tuning(tuned, points, rows, args, command))


def read_tuning_csv(path, rows):
    """results/tuning.csv -> {(lr, epochs): {row: {seed: entry}}} for these rows ({} if absent)."""
    points = {}
    if not os.path.exists(path):
        return points
    with open(path, newline="") as f:
        for rec in csv.DictReader(f):
            if rec["row"] in rows:
                entry = {"clip_acc@1": float(rec["clip_acc@1"]), "video_acc@1": float(rec["video_acc@1"]),
                         "folder": rec["folder"]}
                points.setdefault((float(rec["lr"]), int(rec["epochs"])), {}).setdefault(
                    rec["row"], {})[int(rec["seed"])] = entry
    return points


def render_tuning(tuned, points, rows, args, command):
    """The tuning section: every grid point tried, per row, and the choice."""
    lines = []
    for r in rows:
        m = tune_means(points, r)
        if not m:
            continue
        cell = lambda pt: fmt([v["clip_acc@1"] for v in points[pt][r].values()])
        tried = ", ".join(f"{lr:g} @ {ep}: {cell((lr, ep))}" for lr, ep in sorted(m, key=lambda p: (p[1], p[0])))
        c = tuned["rows"][r]
        lines.append([r, tried, f"**{c['lr']:g}, {c['epochs']}**"])
    for r in MATCHED:
        if r in tuned["rows"]:
            lines.append([r, tuned["rows"][r]["how"], f"**{tuned['rows'][r]['lr']:g}, {tuned['rows'][r]['epochs']}**"])
    cost = tuned["cost"]
    return "\n".join([
        "## Tuning (validation: 20% of the training videos held out; never the test split)", "",
        f"Command{'s' if len(tuned['commands']) > 1 else ''}: "
        f"{', then '.join(f'`{c}`' for c in tuned['commands'])}  ",
        f"Seeds {' '.join(map(str, args.seeds))}; every row: each rate of its grid at "
        f"{tuned['epochs'][0]} epochs, then longer budgets ({', '.join(map(str, tuned['epochs'][1:]))}) "
        f"at the best rate while the mean improved. Cells: rate @ epochs: validation clip_acc@1, "
        f"mean ± std over seeds. Chosen: the best mean. Per-run numbers: `results/tuning.csv`; "
        f"the choices: `results/tuned.json`.  ",
        (f"Costs for the matched CE rows (seconds per epoch, median over the tuning runs, 1 "
         f"thread per process, {args.jobs} processes side by side): full method "
         f"{cost['full_s_per_epoch']} s, CE {cost['ce_s_per_epoch']} s.  " if cost else ""),
        f"Wall time {tuned['wall_seconds']} s. Machine: {machine()}.", "",
        md_table(["row", "tried (rate @ epochs: val clip_acc@1)", "chosen (rate, epochs)"], lines)])


# ------------------------------------------------------------------------------------- main
def results_dir(args):
    """results/ beside --results: the CSVs and tuned.json."""
    return os.path.join(os.path.dirname(os.path.abspath(args.results)), "results")


def parse_args(argv):
    """ablate.py's own arguments (before `--`), checked and with their defaults filled in, and
    train.py's (after it) -> (args, passthrough)."""
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
    owned = OWNED + (("lr", "epochs") if args.tune else ())
    clash = [k for k in owned if given[k] != defaults[k]]
    if clash:
        raise SystemExit(f"ablate.py sets {', '.join('--' + k.replace('_', '-') for k in clash)} "
                         f"itself; use --seeds / --out / --val / --rows / --tune-rates / --tune-epochs instead")
    if args.tune and args.report:
        raise SystemExit("--report writes the sweep's tables; --tune writes its own when it ends")
    args.val = args.val or args.tune
    if args.tune:
        args.seeds = args.seeds or TUNE_SEEDS
    args.out = args.out or ("runs/tune" if args.tune else "runs/ablation_val" if args.val else "runs/ablation")
    args.results = args.results or ("RESULTS.md" if args.tune or not args.val else os.path.join(args.out, "RESULTS.md"))
    if args.tuned is None or args.tune:
        args.tuned = args.tuned or os.path.join(results_dir(args), "tuned.json")
    return args, passthrough


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args, passthrough = parse_args(argv)
    if args.threads and args.jobs <= 1:
        torch.set_num_threads(args.threads)
    command = "python ablate.py " + shlex.join(argv)
    return tune(args, passthrough, command) if args.tune else sweep(args, passthrough, command)


def sweep(args, passthrough, command):
    """Train what is missing of every row and seed, then write the table, the CSV and the box."""
    tuned = load_json(args.tuned) if args.tuned and args.tuned != "none" else None
    args.tuned = args.tuned if tuned else None
    settings = (tuned or {}).get("rows", {})
    missing = [r for r in args.rows if r in MATCHED and r not in settings]
    if missing:  # their epochs come from the tuning's cost measurement
        print(f"[ablate] rows {' '.join(missing)} need a tuned.json with them (python ablate.py "
              f"--tune); left out", flush=True)
        args.rows = [r for r in args.rows if r not in missing]
    csv_path = os.path.join(results_dir(args), "ablation.csv")
    args.seeds = {r: args.seeds or list(range(ROW_SEEDS[r])) for r in args.rows}
    # The table holds every finished seed, not only this invocation's: a later `--seeds 5 6`
    # adds to the record instead of replacing it.
    every_seed = sorted({s for ss in args.seeds.values() for s in ss} | set(range(max(ROW_SEEDS.values())))
                        | seeds_found(args.out, csv_path if args.recorded else None))

    t0 = time.time()
    # What is finished (and whether it was made with these settings: stale runs fail here, early).
    recorded = csv_path if args.recorded else None
    table, _ = collect(every_seed, args.out, passthrough, args.val, args.rows, settings, recorded)
    todo = [] if args.report else plan(table, args.seeds, args.rows, args.out, passthrough, args.val, settings)
    print(f"[ablate] {len(todo)} runs to train, rows {' '.join(args.rows)}, seeds "
          f"{seeds_text(args.seeds)}; finished runs under {args.out} are skipped", flush=True)
    run_all(todo, [row_argv(r, s, args.out, passthrough, args.val, skip, settings) for r, s, skip in todo],
            args.jobs, args.threads)

    table, warnings = collect(every_seed, args.out, passthrough, args.val, args.rows, settings, recorded)
    wall = time.time() - t0
    write_csv(csv_path, table)
    body = render(table, warnings, args, passthrough, command, wall, len(todo), csv_path)
    write_section(args.results, "ablation", body)
    where = "validation" if args.val else "test split"
    write_section(args.results, "claims", box(table, where))
    readme = os.path.join(os.path.dirname(os.path.abspath(args.results)), "README.md")
    if not args.val and os.path.exists(readme) and get_section(open(readme).read(), "claims") is not None:
        write_section(readme, "claims", box(table, where))  # the README carries the same box
    print(f"\n{body}\n\n[ablate] total wall time {wall:.0f} s; wrote {args.results} and {csv_path}")
    return table


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command; finished runs are skipped and the "
              "interrupted ones continue from their last epoch")
        raise SystemExit(130)
