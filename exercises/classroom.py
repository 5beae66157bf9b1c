"""Classrooms for the experiments E11 and E12: teachers and a student whose knowledge we set.

Measuring DATW on trained models mixes its behaviour with seed noise (RESULTS.md: differences
between weightings stay within it). Here each model is a set of logits drawn so that we know
exactly what it knows: on each sample it puts a peak on one class, the right one with a chosen
probability; the peak's height sets how sure it is. The one exception is real: the untrained
ViT is torchvision's MViT blocks at the tiny preset's size (models.py), freshly initialised,
run on random clips. Its logits are tiny and nearly equal, as every untrained classifier's.

Everything is seeded and cheap (a second on a CPU), so a table computed from a classroom is the
same on every run, and a test may assert on it.
"""
import csv
import os
from typing import NamedTuple

import torch

import models

C = 9  # classes, as the synthetic tiny HMDB51: 0-3 one disc's local motion, 4-8 relational
LOCAL, RELATIONAL = torch.arange(0, 4), torch.arange(4, 9)


class Classroom(NamedTuple):
    """Logits (B, C) of the two teachers and the student, and the true labels (B,)."""
    z_vit: torch.Tensor
    z_cnn: torch.Tensor
    z_s: torch.Tensor
    y: torch.Tensor


def peaked_logits(answer, height, gen, noise=0.5):
    """(B, C) logits with a peak of `height` (B,) or scalar on class `answer` (B,), plus noise."""
    z = noise * torch.randn(len(answer), C, generator=gen)
    z[torch.arange(len(answer)), answer] += height
    return z


def answers(y, p_right, gen):
    """Per sample: the true label with probability `p_right` (B,) or scalar, else another class."""
    wrong = (y + torch.randint(1, C, y.shape, generator=gen)) % C  # uniform over the C-1 others
    right = torch.rand(y.shape, generator=gen) < p_right
    return torch.where(right, y, wrong), right


def untrained_vit(B, seed=0):
    """(B, C) logits of a freshly initialised mvit_tiny on random clips: a teacher at chance."""
    with torch.random.fork_rng():  # leave the caller's random stream as it was
        torch.manual_seed(seed)
        vit = models.build_model("mvit_tiny", C).eval()
        spec = models.input_spec("mvit_tiny")
        with torch.no_grad():
            return vit(torch.randn(B, 3, spec.frames, spec.size, spec.size))


def broken_teacher_classrooms(B=256, seed=0):
    """E11: {scenario: Classroom}; the CNN teacher is good, the ViT healthy or broken.

    CNN teacher: right on 90% of the samples, sure (peak 5). The student, a small CNN part-way
    through training, has learnt what the CNN teacher knows: it repeats the CNN teacher's answer
    on 70% of the samples, less sure (peak 3), and guesses otherwise. So DATW finds the CNN
    teacher redundant (d ~ 0) exactly where it is right.
    """
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (B,), generator=gen)
    cnn_answer, _ = answers(y, 0.9, gen)
    z_cnn = peaked_logits(cnn_answer, 5.0, gen)
    copies = torch.rand(B, generator=gen) < 0.7
    z_s = peaked_logits(torch.where(copies, cnn_answer, torch.randint(0, C, (B,), generator=gen)),
                        3.0, gen)
    # A ViT fine-tuned on labels shuffled by a fixed permutation: sure of a consistent wrong class.
    shuffled = (y + 1 + y % 3) % C  # never the true class
    return {
        "healthy ViT": Classroom(peaked_logits(answers(y, 0.9, gen)[0], 5.0, gen), z_cnn, z_s, y),
        "untrained ViT": Classroom(untrained_vit(B, seed), z_cnn, z_s, y),
        "confident, wrong ViT": Classroom(peaked_logits(shuffled, 6.0, gen), z_cnn, z_s, y),
    }


def complementary_classroom(B=512, seed=0):
    """E12: two teachers that know different halves of the task, and a half-trained student.

    As the synthetic set is designed: the ViT is right on 90% of the relational classes and 40%
    of the local-motion ones, the CNN the other way round. Both are surer when right (peak 5)
    than when wrong (peak 2.5), as calibrated models are. The student is right on half of the
    samples, with peaks of 3.
    """
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (B,), generator=gen)
    relational = torch.isin(y, RELATIONAL)

    def teacher(p_relational, p_local):
        answer, right = answers(y, torch.where(relational, p_relational, p_local), gen)
        return peaked_logits(answer, torch.where(right, 5.0, 2.5), gen)

    z_vit, z_cnn = teacher(0.9, 0.4), teacher(0.4, 0.9)
    z_s = peaked_logits(answers(y, 0.5, gen)[0], 3.0, gen)
    return Classroom(z_vit, z_cnn, z_s, y)


def write_csv(path, rows):
    """Write a list of dicts with the same keys as a CSV file (folders created), and say where."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {path}")
