"""plot.py -- the figures of a finished run: training curves, per-class accuracy, DATW's weights.

Reading guide
-------------
Reads <run>/results.json (train.py) and <run>/diagnostics.json (diagnostics.py, run first when it
is missing) and writes four PNGs of FIGSIZE at DPI (800 x 400 px, a README column's width):

  curves.png          training loss per epoch of every model (the teachers' fine-tuning, the
                      CE-only student, the distilled student's CE term and its total loss) and
                      clip_acc@1 at the epochs that were evaluated (only the last by default;
                      train.py --eval-every 1 gives whole curves).
  per_class.png       clip_acc@1 per class of the two teachers and both students, side by side,
                      the classes grouped by kind (synthetic set: local, then relational).
  weights.png         mean w_vit per class under DATW (bars; std over videos as error bars) and the
                      entropy rule (hatched), coloured by kind; dots: DATW against the student
                      after its first epoch. 0.5 is uniform mixing.
  weights_epochs.png  DATW's mean w_vit on the evaluation split against the student of every
                      epoch, per kind, and the logged mean over the training batches.

    python plot.py RUN_DIR [--out DIR]     (DIR defaults to RUN_DIR)

One more figure comes from a study, not a run (studies.py; RESULTS.md, "When does the weighting
rule matter?"):

  asymmetry.png       the student's clip_acc@1 (mean over seeds, std as error bars) under each
                      teacher-weighting rule as the ViT teacher is made uncertain (left) or
                      confidently wrong (right) on more of the classes.

    python plot.py --asymmetry [--out docs]     (reads results/studies.csv)
Nothing is measured here: every number comes from the two json files (docs/diagnostics.md).
"""
import argparse
import csv
import math
import os

import matplotlib

matplotlib.use("Agg")  # files only: no display needed (servers, CI)
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

import diagnostics  # noqa: E402

FIGSIZE, DPI = (8, 4), 100  # inches, dots per inch -> 800 x 400 px
MODELS = {"vit_teacher": ("ViT teacher", "tab:blue"), "cnn_teacher": ("CNN teacher", "tab:orange"),
          "student_ce": ("student, CE only", "tab:gray"), "student": ("student, distilled", "tab:green")}
KIND_COLORS = {"local": "tab:purple", "relational": "tab:cyan"}
NO_KIND = "tab:gray"  # classes without a kind (real HMDB51)


def nan_if_none(x):
    """None (a class without videos) -> NaN, which matplotlib leaves out instead of drawing 0."""
    return math.nan if x is None else x


def by_kind(diag):
    """Classes ordered kind by kind (class order within a kind) and their kinds."""
    kinds = diag["kinds"]
    classes = sorted(diag["classes"], key=lambda c: (kinds.get(c, ""), diag["classes"].index(c)))
    return classes, [kinds.get(c) for c in classes]


def shade_kinds(ax, kinds):
    """A light band behind each kind's classes (x = 0, 1, ...), named at the top of the axes."""
    start = 0
    for i in range(1, len(kinds) + 1):
        if i == len(kinds) or kinds[i] != kinds[start]:
            if kinds[start] is not None:
                ax.axvspan(start - 0.5, i - 0.5, color=KIND_COLORS.get(kinds[start], NO_KIND),
                           alpha=0.08, lw=0)
                ax.text((start + i - 1) / 2, 1.01, f"{kinds[start]} classes", ha="center", va="bottom",
                        transform=ax.get_xaxis_transform(), fontsize=9,
                        color=KIND_COLORS.get(kinds[start], NO_KIND))
            start = i


def plot_curves(results, diag, path):
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=FIGSIZE, layout="constrained")
    cfg = results["config"]
    history = {**{m: rows for m, rows in diag["teacher_history"].items() if rows},
               **results["history"]}
    for model, rows in history.items():
        label, color = MODELS[model]
        epochs = [r["epoch"] for r in rows]
        ax_loss.plot(epochs, [r["ce"] for r in rows], ".-", color=color, label=f"{label} (CE)")
        if model == "student":  # the objective it minimised: CE + alpha KD + beta SDD + gamma RKD
            total = [r["ce"] + cfg["alpha"] * r["kd"] + cfg["beta"] * r["sdd"] + cfg["gamma"] * r["rkd"]
                     for r in rows]
            ax_loss.plot(epochs, total, ".--", color=color, label=f"{label} (total)")
        evaluated = [r for r in rows if "clip_acc@1" in r]
        ax_acc.plot([r["epoch"] for r in evaluated], [r["clip_acc@1"] for r in evaluated],
                    color=color, marker="o", label=label)
    ax_loss.set(title="training loss (mean over the epoch's batches)", xlabel="epoch", ylabel="loss")
    ax_acc.set(title="clip_acc@1 on the evaluation split", xlabel="epoch", ylabel="accuracy (%)",
               ylim=(0, 100))
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def plot_per_class(diag, path):
    classes, kinds = by_kind(diag)
    acc = diag["accuracy"]
    fig, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    width = 0.8 / len(acc)  # the models' bars share 80% of a class's slot
    for j, model in enumerate(acc):
        label, color = MODELS[model]
        x = [i + (j - (len(acc) - 1) / 2) * width for i in range(len(classes))]
        ax.bar(x, [nan_if_none(acc[model]["per_class"][c]) for c in classes], width, color=color,
               label=f"{label}: {acc[model]['all']:.1f}% of all videos")
    shade_kinds(ax, kinds)
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="clip_acc@1 (%)", ylim=(0, 100), xlim=(-0.5, len(classes) - 0.5))
    ax.set_title(f"per-class accuracy, centred view, {diag['videos']} videos", pad=16)
    fig.legend(fontsize=8, ncol=2, loc="outside lower center")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def plot_weights(diag, path):
    classes, kinds = by_kind(diag)
    w = diag["weights"]
    colors = [KIND_COLORS.get(k, NO_KIND) for k in kinds]
    fig, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    x = range(len(classes))

    def per_class(rule, key="mean"):  # a class without videos (or no snapshots) -> NaN: no bar
        return [nan_if_none(diagnostics.at(w[rule], ("per_class", c), key)) for c in classes]

    ax.bar([i - 0.2 for i in x], per_class("datw"), 0.4, yerr=per_class("datw", "std"), color=colors,
           capsize=2)
    ax.bar([i + 0.2 for i in x], per_class("entropy"), 0.4, color=colors, alpha=0.5, hatch="//",
           edgecolor="white")
    # The legend names the two rules; the colour is the kind (named above the bands).
    handles = [Patch(color="0.4", label="DATW, final student (bar: std over videos)"),
               Patch(facecolor="0.7", hatch="//", edgecolor="white", label="entropy rule")]
    if w["datw_first_epoch"]:
        handles += ax.plot([i - 0.2 for i in x], per_class("datw_first_epoch"), "k.",
                           label="DATW, student after epoch 1")
    ax.axhline(0.5, color="k", lw=0.8, ls=":")  # uniform mixing
    shade_kinds(ax, kinds)
    ax.set_xticks(list(x), classes, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="mean w_vit (w_cnn = 1 - w_vit)", ylim=(0, 1), xlim=(-0.5, len(classes) - 0.5))
    ax.set_title("the ViT teacher's weight in the KD target, per class (0.5: uniform)", pad=16)
    fig.legend(handles=handles, fontsize=8, ncol=len(handles), loc="outside lower center")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def plot_weights_epochs(diag, path):
    fig, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    rows = diag["epochs"]
    epochs = [r["epoch"] for r in rows]
    ax.plot(epochs, [r["w_vit_eval"]["all"]["mean"] for r in rows], "k-o", label="all videos")
    for kind in (rows[0]["w_vit_eval"]["per_kind"] if rows else {}):
        ax.plot(epochs, [r["w_vit_eval"]["per_kind"][kind]["mean"] for r in rows], "-o",
                color=KIND_COLORS.get(kind, NO_KIND), label=f"{kind} classes")
    ax.plot(epochs, [r["w_vit_train"] for r in rows], "k--",
            label=f"training batches (logged, --weighting {diag['settings']['weighting']})")
    ax.axhline(0.5, color="k", lw=0.8, ls=":")
    ax.set(title="DATW's w_vit on the evaluation split, against the student of each epoch",
           xlabel="epoch", ylabel="mean w_vit", ylim=(0, 1))
    ax.set_xticks(epochs)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def plot_asymmetry(csv_path, path):
    """Student accuracy per weighting rule against the ViT teacher's fault (studies.py's map)."""
    import studies  # the map's rules and steps name its rows
    with open(csv_path) as f:
        runs = [r for r in csv.DictReader(f) if r["study"] == "asymmetry"]
    fig, axes = plt.subplots(1, 2, figsize=FIGSIZE, dpi=DPI, sharey=True)
    for ax, fault, title in zip(axes, ("uncertain", "wrong"), ("ViT uncertain", "ViT confidently wrong")):
        steps = [("none", 0)] + [s for s in studies.STEPS if s[0] == fault]
        for i, rule in enumerate(studies.RULES):
            values = [[float(r["clip_acc@1"]) for r in runs if r["row"] == f"{rule}_{k}{n or ''}"]
                      for k, n in steps]
            mean = [sum(v) / len(v) if v else math.nan for v in values]
            std = [(sum((x - m) ** 2 for x in v) / (len(v) - 1)) ** 0.5 if len(v) > 1 else 0.0
                   for v, m in zip(values, mean)]
            shift = 0.08 * (i - (len(studies.RULES) - 1) / 2)  # side by side: the error bars stay apart
            ax.errorbar([n + shift for _, n in steps], mean, yerr=std, marker="o", capsize=3, label=rule)
        ax.set_title(f"{title} on n of 9 classes", fontsize=10)
        ax.set_xlabel("n (classes with the fault)")
        ax.set_xticks([n for _, n in steps])
    axes[0].set_ylabel("student clip_acc@1 (validation)")
    axes[0].legend(title="weighting rule")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", nargs="?", help="a finished train.py run (its --out), e.g. runs/default")
    p.add_argument("--out", default=None, help="folder for the PNGs (default: RUN_DIR; --asymmetry: docs)")
    p.add_argument("--asymmetry", action="store_true", help="draw studies.py's asymmetry map instead")
    p.add_argument("--csv", default="results/studies.csv", help="--asymmetry: the studies' runs")
    a = p.parse_args(argv)
    if a.asymmetry:
        if not os.path.exists(a.csv):
            raise SystemExit(f"plot.py: no {a.csv}; run `python studies.py report` after the runs")
        path = os.path.join(a.out or "docs", "asymmetry.png")
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        plot_asymmetry(a.csv, path)
        print(f"written: {path}")
        return {"asymmetry": path}
    if a.run_dir is None:
        p.error("give a run folder (RUN_DIR) or --asymmetry")
    out = a.out or a.run_dir
    results = diagnostics.read_json(os.path.join(a.run_dir, "results.json"),
                                    "run train.py with this --out to the end first")
    if not os.path.exists(os.path.join(a.run_dir, "diagnostics.json")):
        print(f"plot.py: no diagnostics.json in {a.run_dir}; running `python diagnostics.py {a.run_dir}`")
        diagnostics.main([a.run_dir])
    diag = diagnostics.read_json(os.path.join(a.run_dir, "diagnostics.json"), "run diagnostics.py")
    os.makedirs(out, exist_ok=True)
    paths = {name: os.path.join(out, f"{name}.png") for name in ("curves", "per_class", "weights")}
    plot_curves(results, diag, paths["curves"])
    plot_per_class(diag, paths["per_class"])
    plot_weights(diag, paths["weights"])
    if diag["epochs"]:
        paths["weights_epochs"] = os.path.join(out, "weights_epochs.png")
        plot_weights_epochs(diag, paths["weights_epochs"])
    else:
        print("plot.py: no per-epoch students in this run (made before train.py kept them): "
              "no weights_epochs.png")
    print("written: " + ", ".join(paths.values()))
    return paths


if __name__ == "__main__":
    main()
