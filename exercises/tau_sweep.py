"""E12, experiment: sweep tau_w and explain what DATW's temperature does.

tau_w sets the contrast of the softmax over teachers: w_vit / w_cnn = exp((e_vit - e_cnn) / tau_w).
Large tau_w mixes the teachers evenly, small tau_w hands each sample to one teacher. Which is
better? exercises/classroom.py builds two teachers that know different halves of the task
(the ViT the relational classes, the CNN the local-motion ones) and a half-trained student.
Your task: write `sweep_row`, which measures one tau_w with your DATW (exercise E4), then run
    python -m exercises run -- python -m exercises.tau_sweep
It prints one row per tau_w and writes runs/exercises/tau_sweep.csv. Then explain, in a few
sentences each: (1) why spread and hand-over grow as tau_w falls; (2) why the fused target's
accuracy falls at the same time, using the two columns split by whether the student is right
(hint: what does d_k reward?); (3) which tau_w you would train with, and what a training run
would have to show to change your mind (python train.py --tau-w, 3 seeds: RESULTS.md shows
how large the seed-to-seed spread is).
"""
import argparse

from datw import datw_weights, fuse_logits
from exercises.classroom import complementary_classroom, write_csv

TAU_WS = (10.0, 1.0, 0.3, 0.1, 0.03, 0.01)


def sweep_row(teacher_logits, student_logits, labels, tau_w, handover=0.9):
    """DATW at one tau_w, measured on one batch -> a dict of floats:
        tau_w          the temperature itself
        w_vit          mean weight of teacher 0 (the ViT) over the batch
        spread         mean over samples of (largest weight - smallest weight): 0 even, 1 one-hot
        handover       fraction of samples on which one teacher has weight >= `handover`
        fused_acc      accuracy of the fused target z_target (its argmax against `labels`)
        fused_acc_s_right, fused_acc_s_wrong   the same on the samples where the student's own
                       argmax is right, and where it is wrong
    """
    w = datw_weights(teacher_logits, student_logits, tau_w=tau_w)  # (B, K)
    right = fuse_logits(teacher_logits, w).argmax(dim=1) == labels  # (B,) fused target right?
    student_right = student_logits.argmax(dim=1) == labels  # (B,)
    top, bottom = w.max(dim=1).values, w.min(dim=1).values  # (B,) each
    return {"tau_w": tau_w,
            "w_vit": w[:, 0].mean().item(),
            "spread": (top - bottom).mean().item(),
            "handover": (top >= handover).float().mean().item(),
            "fused_acc": right.float().mean().item(),
            "fused_acc_s_right": right[student_right].float().mean().item(),
            "fused_acc_s_wrong": right[~student_right].float().mean().item()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/exercises/tau_sweep.csv", help="CSV file to write")
    args = p.parse_args(argv)
    z_vit, z_cnn, z_s, y = complementary_classroom()
    rows = [sweep_row([z_vit, z_cnn], z_s, y, tau_w) for tau_w in TAU_WS]
    print(f"ViT teacher right on {(z_vit.argmax(1) == y).float().mean():.3f}, CNN teacher on "
          f"{(z_cnn.argmax(1) == y).float().mean():.3f}, the student on "
          f"{(z_s.argmax(1) == y).float().mean():.3f} of {len(y)} samples\n")
    print(" ".join(f"{k:>17s}" for k in rows[0]))
    for r in rows:
        print(" ".join(f"{v:17.3f}" for v in r.values()))
    write_csv(args.out, rows)


if __name__ == "__main__":
    main()
