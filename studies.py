"""studies.py -- two questions beyond the ablation: the pretrained student, and when weighting matters.

Reading guide
-------------
ablate.py asks the paper's claims in the paper's default shape. Two questions need rows of
their own, on the validation split (20% of the training videos; the test split is never built),
seeds 0-2, each row's student paired by seed with its study's baseline:

  zoo        the paper's setting: the student starts from the zoo. Does distillation help it,
             and which small change makes it help? Candidates (train.py flags, each naming its
             source in --help) on top of the full method at its tuned setting, against CE alone
             at its own tuned setting (both from results/tuned.json, ablate.py --tune).
  asymmetry  when does the teacher-weighting rule matter? One teacher (the ViT) is made
             uncertain or confidently wrong on the first n of the 9 classes (faults.py), and the
             four rules (uniform, entropy, DATW, CA-MKD) distil a student from scratch with KD
             alone (no SDD, no RKD) at each step, for 30 epochs (half the tuned budget: the map
             has 20 cells x 3 seeds).

    python studies.py run zoo asymmetry --jobs 2 --threads 1   # train what is missing (resumes)
    python studies.py report                                   # results/studies.csv + RESULTS.md

Each run is a train.py run in runs/studies/<row>/seed<S>; a finished one (results.json) is never
retrained. The report computes every difference as ablate.py does (stats.py: paired seeds, 95%
percentile bootstrap CI) and `python plot.py --asymmetry` draws the map from the CSV.
"""
import argparse
import csv
import json
import os

import ablate
import reports
import stats

OUT, CSV, SEEDS = "runs/studies", "results/studies.csv", [0, 1, 2]
TUNED = "results/tuned.json"
MAP_EPOCHS = 30
RULES = ("uniform", "entropy", "datw", "camkd")
STEPS = [("none", 0), ("uncertain", 3), ("uncertain", 6), ("wrong", 3), ("wrong", 6)]  # (fault, n)


def tuned(row):
    """A row's tuned rate and epochs as train.py flags (ablate.py --tune's choice)."""
    with open(TUNED) as f:
        return ablate.setting_flags(json.load(f)["rows"][row])


def zoo_rows():
    """{row: (label, train.py flags)}: the zoo study, its baseline first."""
    full = [*ablate.FULL, *ablate.ZOO, *tuned("full_student_zoo"), "--skip-student-ce"]  # CE: zoo_ce
    return {"zoo_ce": ("CE only (tuned)", [*ablate.ZOO, *tuned("ce_student_zoo"), "--skip-student"]),
            "zoo_full": ("full method (tuned)", full),
            "zoo_gate": ("+ KD only where the fused target is right (--kd-gate label)", [*full, "--kd-gate", "label"]),
            "zoo_camkd": ("+ label-aware weights (--weighting camkd)", [*full, "--weighting", "camkd"]),
            "zoo_alpha": ("+ half the KD weight (--alpha 0.5)", [*full, "--alpha", "0.5"]),
            "zoo_T1": ("+ sharper targets (--T 1)", [*full, "--T", "1"]),
            "zoo_ce_weight": ("+ half the CE weight (--ce-weight 0.5)", [*full, "--ce-weight", "0.5"]),
            "zoo_dist": ("+ DIST instead of KL, at T = 1 (--kd-loss dist --T 1)",
                         [*full, "--kd-loss", "dist", "--T", "1"]),
            "zoo_mixup": ("+ mixed clips (--mixup 0.4)", [*full, "--mixup", "0.4"])}


def map_rows():
    """{row: (label, flags)}: every rule at every step of the asymmetry, KD only, from scratch."""
    rows = {}
    for fault, n in STEPS:
        for rule in RULES:
            name = f"{rule}_{fault}{n or ''}"
            rows[name] = (f"{rule}, ViT {fault}" + (f" on {n} classes" if n else ""),
                          ["--weighting", rule, *ablate.KD_ONLY, "--fault", fault, "--fault-classes", str(n or 3),
                           "--lr", tuned("uniform")[1], "--epochs", str(MAP_EPOCHS), "--skip-student-ce"])
    return rows


STUDIES = {"zoo": (zoo_rows, "zoo_ce"), "asymmetry": (map_rows, None)}


def argv_of(flags, row, seed):
    folder = os.path.join(OUT, row, f"seed{seed}")
    argv = [*flags, "--val-fraction", "0.2", "--seed", str(seed), "--out", folder]
    if os.path.exists(os.path.join(folder, "config.json")):
        argv.append("--resume")  # started and not finished: continue from its checkpoints
    return argv


def finished(row, seed):
    return ablate.load_json(os.path.join(OUT, row, f"seed{seed}", "results.json"))


def run(names, jobs, threads):
    todo, argvs = [], []
    for seed in SEEDS:  # seed-major, so the first run of a seed trains (or finds) its teachers
        for name in names:
            for row, (_, flags) in STUDIES[name][0]().items():
                if finished(row, seed) is None:
                    todo.append((row, seed, False))
                    argvs.append(argv_of(flags, row, seed))
    print(f"[studies] {len(todo)} runs to train")
    ablate.run_all(todo, argvs, jobs=jobs, threads=threads)


def collect():
    """-> list of dicts, one per finished run: study, row, label, seed, the student's metrics."""
    out = []
    for name, (rows, _) in STUDIES.items():
        for row, (label, flags) in rows().items():
            for seed in SEEDS:
                res = finished(row, seed)
                if res is None:
                    continue
                m = res["models"]["student_ce" if "--skip-student" in flags else "student"]
                out.append({"study": name, "row": row, "label": label, "seed": seed,
                            "clip_acc@1": round(m["clip_acc@1"], 4), "video_acc@1": round(m["video_acc@1"], 4)})
    return out


def difference(runs, a, b, metric="clip_acc@1"):
    """Paired A - B over the seeds both rows have -> cells: mean A, A - B, CI, A > B, verdict."""
    va = {r["seed"]: r[metric] for r in runs if r["row"] == a}
    vb = {r["seed"]: r[metric] for r in runs if r["row"] == b}
    seeds = sorted(set(va) & set(vb))
    if not seeds:
        return ["-"] * 5
    d = [va[s] - vb[s] for s in seeds]
    lo, hi = stats.paired_bootstrap_ci(d)
    mean, std = ablate.mean_std([va[s] for s in seeds])
    return [f"{mean:.1f} ± {std:.1f}", f"{sum(d) / len(d):+.1f}", f"[{lo:+.1f}, {hi:+.1f}]",
            f"{stats.share_greater([va[s] for s in seeds], [vb[s] for s in seeds]) * len(seeds):g}/{len(seeds)}",
            stats.verdict(lo, hi, len(seeds))]


def report(runs):
    """The two RESULTS.md sections (markdown) from the collected runs."""
    rows = zoo_rows()
    zoo = reports.md_table(["row", "what", "clip_acc@1", "- zoo_ce", "95% CI", "seeds above", "verdict"],
                           [[f"`{r}`", rows[r][0], *(difference(runs, r, "zoo_ce") if r != "zoo_ce" else
                                                      [difference(runs, r, r)[0], "", "", "", ""])] for r in rows])
    grid = []
    for fault, n in STEPS:
        for rule in RULES:
            row = f"{rule}_{fault}{n or ''}"
            cells = difference(runs, row, f"uniform_{fault}{n or ''}")
            grid.append([fault, n, rule, cells[0], *(cells[1:] if rule != "uniform" else ["", "", "", ""])])
    asym = reports.md_table(["ViT fault", "classes", "rule", "clip_acc@1", "- uniform", "95% CI", "seeds above",
                             "verdict"], grid)
    return zoo, asym


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["run", "report"])
    p.add_argument("studies", nargs="*", default=list(STUDIES), help=f"for run: {', '.join(STUDIES)}")
    p.add_argument("--jobs", type=int, default=1, help="train.py processes side by side")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process")
    p.add_argument("--results", default="RESULTS.md", help="the file whose sections `report` rewrites")
    p.add_argument("--csv", default=CSV, help="where `report` writes every finished run")
    a = p.parse_args(argv)
    if a.what == "run":
        return run(a.studies, a.jobs, a.threads)
    runs = collect()
    if not runs:
        raise SystemExit(f"studies.py: no finished runs under {OUT}; `python studies.py run` trains them")
    os.makedirs(os.path.dirname(os.path.abspath(a.csv)), exist_ok=True)
    with open(a.csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(runs[0]))
        w.writeheader()
        w.writerows(runs)
    zoo, asym = report(runs)
    reports.write_section(a.results, "studies-zoo", zoo)
    reports.write_section(a.results, "studies-asymmetry", asym)
    print(zoo + "\n\n" + asym)
    return runs


if __name__ == "__main__":
    main()
