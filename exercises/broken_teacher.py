"""E11, experiment: make DATW down-weight a broken teacher.

DATW trusts a teacher that is sure (c_k) and disagrees with the student (d_k). Two broken ViT
teachers exploit that (exercises/classroom.py builds them next to a good CNN teacher):
- an untrained ViT, at chance: c ~ 0, so e ~ 0. But where the student already agrees with the
  CNN teacher, the CNN's d ~ 0 and its e ~ 0 too: DATW splits the weight evenly and the soft
  target is diluted (datw.py's reading guide calls this its documented limit);
- a confident but wrong ViT (fine-tuned on shuffled labels): sure and disagreeing, the very
  profile DATW rewards. No rule that sees only logits can tell it from a good teacher, so this
  one needs the labels, which the training loop has anyway.
Your task: write `robust_weights`, a weighting in DATW's spirit that gives both broken teachers
little weight and still shares the weight between two good teachers. Then run the experiment:
    python -m exercises run -- python -m exercises.broken_teacher
It prints, for each classroom and weighting, the ViT's mean weight, the accuracy of the fused
target and the probability that the soft target (at the KD temperature) puts on the true
class, and writes them to runs/exercises/broken_teacher.csv.
"""
import argparse

import torch

from datw import confidence, discrepancy, fuse_logits, teacher_weights
from exercises.classroom import broken_teacher_classrooms, write_csv


def robust_weights(teacher_logits, student_logits, labels=None, T_c=1.0, tau_w=0.1):
    """(B, K) weights, rows summing to 1, without gradient, as datw_weights; the efficacy is
    changed so that a teacher at chance never ties with a sure one, and (given `labels` (B,))
    a teacher that is sure of a wrong class gets little weight. labels=None: logits only."""
    with torch.no_grad():
        z_t = torch.stack([z.float() for z in teacher_logits])  # (K, B, C)
        c = confidence(z_t, T_c)  # (K, B)
        d = discrepancy(z_t, student_logits.float()[None])  # (K, B)
        # A floor under the discrepancy: repeating the student halves a sure teacher's
        # efficacy instead of zeroing it, so it still beats a teacher at chance (c ~ 0).
        e = c * (0.5 + 0.5 * d)  # (K, B), still in [0, 1]
        if labels is not None:
            # The probability each teacher gives the true class: ~0 for a sure, wrong teacher.
            p = torch.softmax(z_t / T_c, dim=-1)  # (K, B, C)
            e = e * p[:, torch.arange(len(labels)), labels]  # (K, B)
        return torch.softmax(e / tau_w, dim=0).t()  # over teachers: (K, B) -> (B, K)


def weightings():
    """{name: weights(z_vit, z_cnn, z_s, y)}: the baselines, DATW, yours without and with labels."""
    baseline = lambda m: lambda zv, zc, zs, y: teacher_weights(m, [zv, zc], zs)
    return {**{m: baseline(m) for m in ("uniform", "entropy", "datw")},
            "yours, logits only": lambda zv, zc, zs, y: robust_weights([zv, zc], zs),
            "yours, with labels": lambda zv, zc, zs, y: robust_weights([zv, zc], zs, y)}


def table(T=4.0):
    """One row per classroom and weighting: w_vit, fused-target accuracy, soft-target p(y)."""
    rows = []
    for scenario, (z_vit, z_cnn, z_s, y) in broken_teacher_classrooms().items():
        for name, weights in weightings().items():
            w = weights(z_vit, z_cnn, z_s, y)  # (B, 2)
            z_target = fuse_logits([z_vit, z_cnn], w)  # (B, C)
            p_true = torch.softmax(z_target / T, dim=1)[torch.arange(len(y)), y]  # (B,)
            rows.append({"classroom": scenario, "weighting": name,
                         "w_vit": w[:, 0].mean().item(),
                         "fused_acc": (z_target.argmax(1) == y).float().mean().item(),
                         "p_true_at_T": p_true.mean().item()})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/exercises/broken_teacher.csv", help="CSV file to write")
    args = p.parse_args(argv)
    rows = table()
    print(f"{'classroom':22s} {'weighting':20s} {'w_vit':>6s} {'fused acc':>9s}"
          f" {'p(y) at T=4':>11s}")
    for r in rows:
        print(f"{r['classroom']:22s} {r['weighting']:20s} {r['w_vit']:6.3f} {r['fused_acc']:9.3f}"
              f" {r['p_true_at_T']:11.3f}")
    write_csv(args.out, rows)


if __name__ == "__main__":
    main()
