"""faults.py -- one teacher made uncertain or confidently wrong on part of the classes, on purpose.

Reading guide
-------------
Why: a teacher-weighting rule (datw.py) can only matter when the teachers differ in how good
their targets are. Fine-tuned on the same clips, ours rarely do. This file makes them differ in a
controlled way, so that an experiment can ask "when would I want DATW?" (RESULTS.md, the
asymmetry map). It is an experiment's tool, not part of the paper's method, and it is off unless
--fault is given.

What: a function of one teacher's logits z (B, C), applied after the frozen teacher's forward
pass, during distillation only (its own fine-tuning and its reported accuracy are untouched).
The affected classes are S = {0, ..., n - 1}, the first n classes.

    "wrong"      the logits of the classes in S are rotated by one:  z'[c] = z[c + 1 mod n] for
                 c in S. A teacher sure of class c in S now says, as sure, class c - 1 mod n: what
                 a teacher fine-tuned with the labels of S permuted would say. Its confidence
                 (entropy) is unchanged, so no rule that reads only confidence can see the fault.
    "uncertain"  on clips whose top class is in S, the logits are divided by FLATTEN (a softmax
                 temperature of 10): the prediction's order is kept, its confidence nearly gone,
                 as for a teacher that never saw those classes or was stopped early.

Neither reads the clip's label: the fault is a property of the teacher, not of the data.
Shapes: z (B, C) in, (B, C) out, same dtype; a new tensor (the teacher's output is not modified).
"""
import torch

FAULTS = ("none", "uncertain", "wrong")
FLATTEN = 10.0  # "uncertain": logits / 10, i.e. the teacher's softmax read at temperature 10


def rotate_classes(n, C):
    """The class order of "wrong": index c of the new logits reads class rotated[c] of the old."""
    if not 2 <= n <= C:
        raise ValueError(f"a 'wrong' fault rotates the logits of n classes among themselves: "
                         f"needs 2 <= n <= C = {C}, got n = {n}.")
    return [(c + 1) % n if c < n else c for c in range(C)]  # S rotated by one, the rest unchanged


def apply_fault(z, kind, n):
    """A teacher's logits z (B, C) as the faulty teacher `kind` on the first n classes gives them."""
    if kind == "none" or n == 0:
        return z
    C = z.shape[-1]
    if kind == "wrong":
        return z[:, rotate_classes(n, C)]  # (B, C): column c takes the old column c + 1 mod n
    if kind == "uncertain":
        if not 1 <= n <= C:
            raise ValueError(f"an 'uncertain' fault needs 1 <= n <= C = {C} classes, got n = {n}.")
        in_s = z.argmax(dim=-1) < n  # (B,) the teacher's own top class is one of S
        return torch.where(in_s[:, None], z / FLATTEN, z)  # (B, 1) broadcasts over C
    raise ValueError(f"unknown fault {kind!r}; expected one of {FAULTS}.")


if __name__ == "__main__":
    from datw import confidence  # the demo reads the faulty teacher as DATW does

    C, n = 5, 3
    z = 6.0 * torch.eye(C)  # one clip per class, the teacher sure and right on each
    print(f"A teacher sure and right on {C} clips (clip b is of class b); faults on the first {n} classes\n")
    for kind in FAULTS:
        zf = apply_fault(z, kind, n)
        print(f"{kind:9s} top class per clip: {zf.argmax(-1).tolist()}   "
              f"confidence c: {[round(v, 2) for v in confidence(zf).tolist()]}")
    print("\n'wrong' keeps the confidence and changes the answer (only the label can tell);\n"
          "'uncertain' keeps the answer and removes the confidence (the entropy can tell).")
