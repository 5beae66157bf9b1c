"""rkd.py as an executable specification: naive-loop oracles, invariances, gradients, dtypes."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from rkd import (pairwise_distances, rkd_angle_loss, rkd_distance_loss, rkd_loss,
                 smooth_l1)


def huber(r):
    # l_delta with delta = 1, written from Park et al.'s Eq. 5 (independently of rkd.smooth_l1).
    return 0.5 * r * r if abs(r) < 1 else abs(r) - 0.5


def naive_distance_loss(s, t):
    """L_D straight from the equations, in float64 Python loops."""
    B = len(s)
    dist = lambda f, i, j: math.dist(f[i].tolist(), f[j].tolist())
    mu_s = sum(dist(s, i, j) for i in range(B) for j in range(B) if i != j) / (B * (B - 1))
    mu_t = sum(dist(t, i, j) for i in range(B) for j in range(B) if i != j) / (B * (B - 1))
    total = sum(huber(dist(s, i, j) / mu_s - dist(t, i, j) / mu_t)
                for i in range(B) for j in range(B))
    return total / B ** 2  # all pairs, the diagonal (0 vs 0) included


def naive_angle_loss(s, t):
    """L_A from the equations: cos of the angle at vertex j, 0 for degenerate triplets."""
    def cos(f, i, j, k):
        a, b = f[i] - f[j], f[k] - f[j]
        if a.norm() == 0 or b.norm() == 0:
            return 0.0  # a zero difference vector normalises to zero (official code)
        return float((a / a.norm()) @ (b / b.norm()))
    B = len(s)
    total = sum(huber(cos(s, i, j, k) - cos(t, i, j, k))
                for i, j, k in itertools.product(range(B), repeat=3))
    return total / B ** 3


@pytest.mark.E9
def test_distance_loss_equals_naive_loop_with_different_widths():
    s, t = torch.randn(7, 5, dtype=torch.float64), torch.randn(7, 11, dtype=torch.float64)
    assert rkd_distance_loss(s, t).item() == pytest.approx(naive_distance_loss(s, t), rel=1e-5)


@pytest.mark.E10
def test_angle_loss_equals_naive_loop_with_different_widths():
    s, t = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 9, dtype=torch.float64)
    assert rkd_angle_loss(s, t).item() == pytest.approx(naive_angle_loss(s, t), rel=1e-5)


@pytest.mark.E10
def test_angle_loss_equals_naive_loop_with_duplicate_rows():
    s, t = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    s[3], t[1] = s[0], t[4]  # degenerate triplets on each side
    assert rkd_angle_loss(s, t).item() == pytest.approx(naive_angle_loss(s, t), rel=1e-5, abs=1e-7)


@pytest.mark.E9
def test_mu_equals_official_mean_of_positive_distances():
    # Official code: mean_td = t_d[t_d > 0].mean(); ours: sum over i != j / (B (B - 1)).
    f = torch.randn(9, 4)
    d = pairwise_distances(f)
    assert (d.diagonal() == 0).all()
    assert (d.sum() / (9 * 8)).item() == pytest.approx(d[d > 0].mean().item(), rel=1e-6)
    assert torch.allclose(d, torch.cdist(f, f), atol=1e-4)


def test_smooth_l1_equals_torch_smooth_l1_with_beta_1():
    x, y = 3 * torch.randn(100), 3 * torch.randn(100)
    ours = smooth_l1(x, y).sum() / x.numel()
    assert torch.allclose(ours, F.smooth_l1_loss(x, y, reduction="mean", beta=1.0))


@pytest.mark.E9
def test_distance_loss_unchanged_when_either_embedding_is_scaled():
    s, t = torch.randn(8, 6), torch.randn(8, 10)
    base = rkd_distance_loss(s, t)
    assert torch.allclose(rkd_distance_loss(7.0 * s, t), base, atol=1e-6)
    assert torch.allclose(rkd_distance_loss(s, 0.01 * t), base, atol=1e-6)


@pytest.mark.E10
def test_angle_loss_unchanged_under_translation_and_scaling():
    s, t = torch.randn(8, 6), torch.randn(8, 10)
    base = rkd_angle_loss(s, t)
    assert torch.allclose(rkd_angle_loss(3.0 * s + 2.0, t), base, atol=1e-6)
    assert torch.allclose(rkd_angle_loss(s, 0.5 * t - torch.randn(10)), base, atol=1e-6)


@pytest.mark.E10
def test_losses_zero_when_student_equals_teacher_up_to_scale():
    t = torch.randn(8, 6)
    assert rkd_distance_loss(4.0 * t, t).item() < 1e-10
    assert rkd_angle_loss(4.0 * t, t).item() < 1e-10
    # Also across widths: a rotated, zero-padded copy (width 6 -> 9) has the same relations.
    Q, _ = torch.linalg.qr(torch.randn(9, 9))
    s = torch.cat([t, torch.zeros(8, 3)], dim=1) @ Q
    assert rkd_loss(s, t).item() < 1e-8


@pytest.mark.E9
@pytest.mark.parametrize("duplicate_in", ["both", "student_only"])
def test_distance_loss_gradients_finite_with_duplicate_samples(duplicate_in):
    # The distance term alone (exercise E9 comes before the angle term): sqrt at distance 0.
    t, s = torch.randn(6, 10), torch.randn(6, 4)
    s[4] = s[1]
    if duplicate_in == "both":
        t[4] = t[1]
    s.requires_grad_(True)
    loss = rkd_distance_loss(s, t)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


@pytest.mark.E10
@pytest.mark.parametrize("duplicate_in", ["both", "student_only"])
def test_gradients_finite_with_duplicate_samples(duplicate_in):
    t = torch.randn(6, 10)
    s = torch.randn(6, 4)
    s[4] = s[1]  # the same clip twice in the batch (or a student that merges two clips)
    if duplicate_in == "both":
        t[4] = t[1]
    s.requires_grad_(True)
    loss = rkd_loss(s, t)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    if duplicate_in == "both":
        assert s.grad.abs().max() < 1e3  # consistent duplicates give ordinary gradients


@pytest.mark.E10
def test_teacher_receives_no_gradient_and_student_does():
    s, t = torch.randn(5, 3, requires_grad=True), torch.randn(5, 7, requires_grad=True)
    rkd_loss(s, t).backward()
    assert t.grad is None
    assert s.grad is not None and s.grad.abs().sum() > 0


@pytest.mark.E10
def test_rkd_loss_is_weighted_sum_and_angle_term_can_be_off():
    s, t = torch.randn(6, 3), torch.randn(6, 5)
    l_d, l_a = rkd_distance_loss(s, t), rkd_angle_loss(s, t)
    assert torch.allclose(rkd_loss(s, t), 25.0 * l_d + 50.0 * l_a)
    assert torch.allclose(rkd_loss(s, t, w_a=0.0), 25.0 * l_d)
    assert torch.allclose(rkd_loss(s, t, w_d=1.0, w_a=2.0), l_d + 2.0 * l_a)


@pytest.mark.E10
def test_losses_in_float32_under_autocast():
    s, t = torch.randn(6, 8).bfloat16(), torch.randn(6, 8).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        l_d, l_a = rkd_distance_loss(s, t), rkd_angle_loss(s, t)
    assert l_d.dtype == torch.float32 and l_a.dtype == torch.float32
    assert torch.allclose(l_d, rkd_distance_loss(s.float(), t.float()))


@pytest.mark.E9
def test_maps_are_flattened_and_bad_batches_rejected():
    s, t = torch.randn(4, 2, 3), torch.randn(4, 6)
    assert torch.allclose(rkd_distance_loss(s, t), rkd_distance_loss(s.reshape(4, 6), t))
    with pytest.raises(ValueError, match="drop_last"):
        rkd_distance_loss(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="same batch"):
        rkd_angle_loss(torch.randn(4, 3), torch.randn(5, 3))
