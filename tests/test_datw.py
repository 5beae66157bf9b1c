"""datw.py as an executable specification: the properties DATW must have, oracles, dtypes."""
import math

import pytest
import torch
import torch.nn.functional as F

from datw import (camkd_weights, confidence, datw_weights, discrepancy, entropy_weights, fuse_logits,
                  kd_loss, single_teacher_weights, teacher_weights, uniform_weights)

METHODS = ["datw", "uniform", "entropy", "vit", "cnn"]
# Exercise marks per method: "datw" and "entropy" run code that students write in exercise E4
# (exercises/exercises.toml); the uniform and single-teacher baselines are given to them.
MARKED_METHODS = [pytest.param(m, marks=pytest.mark.E4) if m in ("datw", "entropy") else m
                  for m in METHODS]


def naive_datw(z_teachers, z_s, T_c=1.0, tau_w=0.1):
    """DATW weights from the equations, one sample and one teacher at a time (Python floats)."""
    B, C = z_s.shape
    rows = []
    for b in range(B):
        s = [x - sum(z_s[b].tolist()) / C for x in z_s[b].tolist()]  # centred student logits
        e = []
        for z in z_teachers:
            v = z[b].tolist()
            m = max(x / T_c for x in v)
            p = [math.exp(x / T_c - m) for x in v]
            p = [x / sum(p) for x in p]
            H = -sum(x * math.log(x) for x in p if x > 0)
            c = 1 - H / math.log(C)
            t = [x - sum(v) / C for x in v]
            dot = sum(a * b for a, b in zip(t, s))
            cos = dot / math.sqrt(sum(a * a for a in t) * sum(b * b for b in s))
            e.append(c * (1 - cos) / 2)
        w = [math.exp(x / tau_w) for x in e]
        rows.append([x / sum(w) for x in w])
    return torch.tensor(rows)


@pytest.mark.E2
def test_confidence_equals_normalised_entropy_written_out():
    z = 3 * torch.randn(6, 7)
    for T_c in (1.0, 4.0):
        p = F.softmax(z / T_c, dim=1).tolist()
        naive = [1 - -sum(x * math.log(x) for x in row) / math.log(7) for row in p]
        assert torch.allclose(confidence(z, T_c), torch.tensor(naive), atol=1e-5)


@pytest.mark.E2
def test_confidence_is_one_for_one_hot_and_zero_for_uniform_for_any_number_of_classes():
    for C in (2, 9, 51):
        assert torch.allclose(confidence(torch.zeros(3, C)), torch.zeros(3), atol=1e-6)
        assert torch.allclose(confidence(50.0 * torch.eye(C)), torch.ones(C), atol=1e-5)


@pytest.mark.E2
def test_confidence_finite_and_in_range_for_extreme_logits():
    c = confidence(1e4 * torch.randn(8, 10))  # softmax underflows to exact zeros here
    assert torch.isfinite(c).all() and (c >= 0).all() and (c <= 1).all()


def naive_discrepancy(z_t, z_s):
    """(1 - cos) / 2 of the centred logits, one row at a time (Python floats)."""
    rows = []
    for t, s in zip(z_t.tolist(), z_s.tolist()):
        t = [x - sum(t) / len(t) for x in t]
        s = [x - sum(s) / len(s) for x in s]
        dot, norms = sum(a * b for a, b in zip(t, s)), sum(a * a for a in t) * sum(b * b for b in s)
        cos = dot / math.sqrt(norms)
        rows.append((1 - cos) / 2)
    return torch.tensor(rows)


@pytest.mark.E3
def test_discrepancy_equals_centred_cosine_written_out():
    z_t, z_s = 2 * torch.randn(8, 6), torch.randn(8, 6) + torch.arange(8.0)[:, None]
    assert torch.allclose(discrepancy(z_t, z_s), naive_discrepancy(z_t, z_s), atol=1e-5)


@pytest.mark.E3
def test_discrepancy_sees_predictions_not_shifts_or_scales_of_the_logits():
    z = torch.randn(8, 6)
    # Same prediction: shifted or sharpened logits (softmax ignores the shift) -> d = 0.
    assert torch.allclose(discrepancy(z + 5.0, z), torch.zeros(8), atol=1e-6)
    assert torch.allclose(discrepancy(3.0 * z, z), torch.zeros(8), atol=1e-6)
    # The opposite prediction -> d = 1; every value lies in [0, 1].
    assert torch.allclose(discrepancy(-z, z), torch.ones(8), atol=1e-6)
    d = discrepancy(torch.randn(100, 6), torch.randn(100, 6))
    assert (d >= 0).all() and (d <= 1).all()


@pytest.mark.E3
def test_discrepancy_of_a_flat_row_is_one_half():
    # A flat row has no direction: cosine_similarity gives 0, so d = 0.5 and nothing is NaN.
    assert torch.equal(discrepancy(torch.ones(4, 6), torch.randn(4, 6)), torch.full((4,), 0.5))


@pytest.mark.E4
def test_datw_weights_equal_naive_loop_for_three_teachers():
    z_s = torch.randn(5, 7)
    z_t = [2 * torch.randn(5, 7) for _ in range(3)]
    for T_c, tau_w in [(1.0, 0.1), (4.0, 0.5)]:
        w = datw_weights(z_t, z_s, T_c=T_c, tau_w=tau_w)
        assert torch.allclose(w, naive_datw(z_t, z_s, T_c, tau_w), atol=1e-5)


@pytest.mark.parametrize("method", MARKED_METHODS)
def test_weights_are_nonnegative_and_sum_to_one_per_sample(method):
    z_s, z_vit, z_cnn = torch.randn(3, 16, 10).unbind(0)
    # Every method accepts the same keywords, so a training script can pass them blindly.
    w = teacher_weights(method, [z_vit, z_cnn], z_s, T_c=1.0, tau_w=0.1)
    assert w.shape == (16, 2)
    assert (w >= 0).all()
    assert torch.allclose(w.sum(dim=1), torch.ones(16))


@pytest.mark.E4
def test_more_confident_teacher_gets_more_weight_all_else_equal():
    # Scaling logits by s > 1 sharpens the softmax (lower entropy) but keeps the direction,
    # so the discrepancy to the student is exactly the same: only confidence differs.
    z_s, u = torch.randn(64, 10), torch.randn(64, 10)
    s = 1.5 + 2 * torch.rand(64, 1)
    z_t = [u, s * u]
    assert torch.allclose(discrepancy(u, z_s), discrepancy(s * u, z_s), atol=1e-6)
    assert (confidence(s * u) > confidence(u)).all()
    w = datw_weights(z_t, z_s)
    assert (w[:, 1] > w[:, 0]).all()


@pytest.mark.E4
def test_teacher_disagreeing_more_gets_more_weight_all_else_equal():
    # Two permutations of the same logits have the same entropy (confidence) but point
    # in different directions relative to the student: only the discrepancy differs.
    z_s, u = torch.randn(64, 10), 3 * torch.randn(64, 10)
    a, b = u[:, torch.randperm(10)], u[:, torch.randperm(10)]
    assert torch.allclose(confidence(a), confidence(b), atol=1e-5)
    d_a, d_b = discrepancy(a, z_s), discrepancy(b, z_s)
    w = datw_weights([a, b], z_s)
    clear = (d_a - d_b).abs() > 1e-3  # skip ties, where rounding decides
    assert clear.sum() > 50
    assert ((w[:, 0] > w[:, 1]) == (d_a > d_b))[clear].all()


@pytest.mark.E4
def test_teacher_identical_to_student_loses_to_equally_confident_different_one():
    z_s = 3 * torch.randn(32, 10)
    different = z_s[:, torch.roll(torch.arange(10), 1)]  # same values, other classes: same c
    for redundant in (z_s, z_s + 5.0):  # + 5 changes no prediction: still redundant (centring)
        w = datw_weights([redundant, different], z_s)
        assert (w[:, 1] > w[:, 0]).all()
        assert torch.allclose(discrepancy(redundant, z_s), torch.zeros(32), atol=1e-6)


@pytest.mark.E4
def test_identical_teachers_get_uniform_weights():
    z_s, z = torch.randn(8, 10), torch.randn(8, 10)
    for method in ("datw", "entropy", "uniform"):
        assert torch.equal(teacher_weights(method, [z, z.clone()], z_s), torch.full((8, 2), 0.5))
    assert torch.allclose(datw_weights([z, z, z], z_s), torch.full((8, 3), 1 / 3))


@pytest.mark.E4
def test_documented_limit_a_teacher_at_chance_ties_with_one_the_student_agrees_with():
    # e = c * d: uniform logits give c = 0, a teacher equal to the student gives d = 0, so both
    # efficacies are 0 and DATW splits the weight evenly (datw.py, "a consequence"). Entropy-only
    # weighting, which ignores the student, does reject the teacher at chance.
    z_s = 8.0 * F.one_hot(torch.arange(16) % 9, 9).float()  # a sure student (c = 0.98)
    at_chance, agreeing = torch.zeros(16, 9), z_s.clone()
    torch.testing.assert_close(datw_weights([at_chance, agreeing], z_s), torch.full((16, 2), 0.5))
    assert (entropy_weights([at_chance, agreeing], z_s)[:, 0] < 0.001).all()


@pytest.mark.E4
def test_no_gradient_through_weights_or_target():
    z_s = torch.randn(4, 6, requires_grad=True)
    z_vit, z_cnn = torch.randn(4, 6, requires_grad=True), torch.randn(4, 6, requires_grad=True)
    for method in METHODS:
        assert not teacher_weights(method, [z_vit, z_cnn], z_s).requires_grad
    w = datw_weights([z_vit, z_cnn], z_s)
    loss = kd_loss(z_s, fuse_logits([z_vit, z_cnn], w), T=4.0)
    loss.backward()
    assert z_s.grad is not None and z_s.grad.abs().sum() > 0
    assert z_vit.grad is None and z_cnn.grad is None  # kd_loss treats its target as constant


@pytest.mark.E1
def test_kd_loss_is_zero_when_student_equals_target():
    z = 5 * torch.randn(8, 10)
    assert kd_loss(z, z.clone(), T=4.0).abs().item() < 1e-6


@pytest.mark.E1
def test_kd_loss_equals_hand_written_sum_over_batch_kl():
    z_s, z_t, T = torch.randn(6, 9), torch.randn(6, 9), 3.0
    p_t, p_s = F.softmax(z_t / T, dim=1), F.softmax(z_s / T, dim=1)
    kl_sum = sum(float(p_t[b, c] * (torch.log(p_t[b, c]) - torch.log(p_s[b, c])))
                 for b in range(6) for c in range(9))
    assert kd_loss(z_s, z_t, T=T).item() == pytest.approx(T ** 2 * kl_sum / 6, rel=1e-5)
    ref = F.kl_div(F.log_softmax(z_s / T, 1), F.log_softmax(z_t / T, 1), reduction="batchmean",
                   log_target=True)
    assert torch.allclose(kd_loss(z_s, z_t, T=T), T ** 2 * ref)


@pytest.mark.E1
def test_kd_loss_sends_no_gradient_to_the_target():
    z_s, z_t = torch.randn(4, 6, requires_grad=True), torch.randn(4, 6, requires_grad=True)
    kd_loss(z_s, z_t, T=4.0).backward()
    assert z_t.grad is None and z_s.grad.abs().sum() > 0


@pytest.mark.E1
def test_kd_loss_finite_for_extreme_logits():
    z_s = (1e4 * torch.randn(4, 8)).requires_grad_(True)
    loss = kd_loss(z_s, -z_s.detach(), T=1.0)  # every soft target the student gives ~0
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z_s.grad).all()


@pytest.mark.E1
def test_kd_loss_in_float32_under_autocast():
    z_s, z_t = torch.randn(4, 6).bfloat16(), torch.randn(4, 6).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = kd_loss(z_s, z_t, T=4.0)
    assert loss.dtype == torch.float32
    assert torch.allclose(loss, kd_loss(z_s.float(), z_t.float(), T=4.0))


@pytest.mark.E4
def test_single_teacher_and_uniform_baselines_fuse_to_the_expected_target():
    z_s, z_vit, z_cnn = torch.randn(3, 5, 7).unbind(0)
    for method, expected in (("vit", z_vit), ("cnn", z_cnn)):
        w = teacher_weights(method, [z_vit, z_cnn], z_s)
        assert torch.equal(fuse_logits([z_vit, z_cnn], w), expected)
    assert torch.equal(single_teacher_weights([z_vit, z_cnn], z_s, k=1),
                       teacher_weights("cnn", [z_vit, z_cnn], z_s))
    w = uniform_weights([z_vit, z_cnn], z_s)
    assert torch.allclose(fuse_logits([z_vit, z_cnn], w), (z_vit + z_cnn) / 2)


@pytest.mark.E4
def test_entropy_baseline_is_softmax_of_confidence_and_ignores_the_student():
    z_vit, z_cnn = torch.randn(2, 5, 7).unbind(0)
    w1 = entropy_weights([z_vit, z_cnn], torch.randn(5, 7), tau_w=0.2)
    w2 = teacher_weights("entropy", [z_vit, z_cnn], torch.randn(5, 7), tau_w=0.2)
    c = torch.stack([confidence(z_vit), confidence(z_cnn)], dim=1)
    assert torch.allclose(w1, torch.softmax(c / 0.2, dim=1)) and torch.allclose(w1, w2)


@pytest.mark.E4
def test_unknown_method_and_bad_shapes_raise_actionable_errors():
    z = torch.randn(4, 6)
    with pytest.raises(ValueError, match="expected one of"):
        teacher_weights("mean", [z, z], z)
    with pytest.raises(ValueError, match=r"\(B, C\)"):
        datw_weights([z, torch.randn(4, 5)], z)


@pytest.mark.E4
def test_float32_under_autocast():
    z_s, z_vit, z_cnn = (torch.randn(4, 6).bfloat16() for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        w = datw_weights([z_vit, z_cnn], z_s)
        z_target = fuse_logits([z_vit, z_cnn], w)
        loss = kd_loss(z_s, z_target, T=4.0)
    assert w.dtype == z_target.dtype == loss.dtype == torch.float32


@pytest.mark.E4
@pytest.mark.parametrize("method", METHODS)
def test_finite_for_extreme_logits(method):
    big = 1e4 * torch.sign(torch.randn(3, 4, 8))
    z_s, z_vit, z_cnn = big.unbind(0)
    z_s = z_s.clone().requires_grad_(True)
    w = teacher_weights(method, [z_vit, z_cnn], z_s)
    loss = kd_loss(z_s, fuse_logits([z_vit, z_cnn], w), T=1.0)
    loss.backward()
    assert torch.isfinite(w).all() and torch.isfinite(loss) and torch.isfinite(z_s.grad).all()
    flat = torch.zeros(4, 8)  # the other extreme: all-equal logits (c = 0, cos undefined)
    assert torch.isfinite(teacher_weights(method, [flat, z_cnn], flat)).all()


# ------------------------------------------------------------ the label-aware baseline (CA-MKD)
def naive_camkd(z_teachers, y):
    """CA-MKD's weights from the equation, one sample and one teacher at a time (Python floats):
    L_k = -log softmax(z_k)[y], w_k = (1 - exp(L_k) / sum_j exp(L_j)) / (K - 1)."""
    K, rows = len(z_teachers), []
    for b, label in enumerate(y.tolist()):
        L = []
        for z in z_teachers:
            v = z[b].tolist()
            m = max(v)
            L.append(-(v[label] - m - math.log(sum(math.exp(x - m) for x in v))))
        m = max(L)
        s = [math.exp(x - m) for x in L]
        rows.append([(1 - x / sum(s)) / (K - 1) for x in s])
    return torch.tensor(rows)


def test_camkd_weights_equal_naive_loop_for_two_and_three_teachers():
    g = torch.Generator().manual_seed(0)
    for K in (2, 3):
        z_s = torch.randn(6, 7, generator=g)
        z_t = [3 * torch.randn(6, 7, generator=g) for _ in range(K)]
        y = torch.randint(0, 7, (6,), generator=g)
        w = teacher_weights("camkd", z_t, z_s, y=y)
        assert torch.allclose(w, naive_camkd(z_t, y), atol=1e-6)
        assert torch.allclose(w.sum(dim=1), torch.ones(6)) and (w >= 0).all()


def test_camkd_for_two_teachers_is_each_teachers_probability_of_the_label_normalised():
    # The docstring's identity: with K = 2, (1 - softmax(L)) = softmax(-L) = p_k(y) / sum_j p_j(y).
    z_vit, z_cnn, z_s = (2 * torch.randn(3, 16, 9)).unbind(0)
    y = torch.randint(0, 9, (16,))
    p_y = torch.stack([F.softmax(z, dim=1)[torch.arange(16), y] for z in (z_vit, z_cnn)], dim=1)
    assert torch.allclose(camkd_weights([z_vit, z_cnn], z_s, y), p_y / p_y.sum(1, keepdim=True), atol=1e-6)


def test_camkd_gives_more_weight_to_the_teacher_that_is_right_and_sure():
    y = torch.arange(8) % 5
    right = 6.0 * F.one_hot(y, 5).float()  # sure of the label
    wrong = 6.0 * F.one_hot((y + 1) % 5, 5).float()  # as sure, of another class
    unsure = torch.zeros(8, 5)
    z_s = torch.randn(8, 5)
    for other in (wrong, unsure, 0.3 * right):  # confidently wrong, at chance, right but less sure
        w = camkd_weights([other, right], z_s, y)
        assert (w[:, 1] > w[:, 0]).all()
    # DATW, blind to labels, prefers the confidently wrong teacher when only it disagrees with
    # the student; the label-aware rule does not.
    assert (datw_weights([wrong, right], right)[:, 0] > 0.99).all()
    assert (camkd_weights([wrong, right], right, y)[:, 0] < 0.01).all()


def test_camkd_ignores_the_student_and_sends_no_gradient_to_the_teachers():
    z_vit, z_cnn = torch.randn(4, 6, requires_grad=True), torch.randn(4, 6, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3])
    w1, w2 = (teacher_weights("camkd", [z_vit, z_cnn], torch.randn(4, 6), y=y) for _ in range(2))
    assert torch.equal(w1, w2) and not w1.requires_grad
    z_s = torch.randn(4, 6, requires_grad=True)
    kd_loss(z_s, fuse_logits([z_vit, z_cnn], w1), T=4.0).backward()
    assert z_vit.grad is None and z_cnn.grad is None and z_s.grad.abs().sum() > 0


def test_camkd_in_float32_finite_and_with_actionable_errors():
    big = 1e4 * torch.sign(torch.randn(3, 4, 8))
    y = torch.tensor([0, 3, 5, 7])
    w = teacher_weights("camkd", [big[0].bfloat16(), big[1].bfloat16()], big[2].bfloat16(), y=y)
    assert w.dtype == torch.float32 and torch.isfinite(w).all()
    assert torch.allclose(w.sum(dim=1), torch.ones(4))
    with pytest.raises(ValueError, match="pass y="):
        teacher_weights("camkd", [big[0], big[1]], big[2])
    with pytest.raises(ValueError, match="K >= 2"):
        camkd_weights([big[0]], big[2], y)


def naive_dist(z_s, z_t, T):
    """DIST from its definition: 1 - Pearson r per clip (over classes) and per class (over clips),
    each averaged, scaled by T^2; numpy's corrcoef as the reference correlation."""
    import numpy as np
    p_s = torch.softmax(z_s.double() / T, 1).numpy()
    p_t = torch.softmax(z_t.double() / T, 1).numpy()
    inter = np.mean([np.corrcoef(p_s[b], p_t[b])[0, 1] for b in range(p_s.shape[0])])
    intra = np.mean([np.corrcoef(p_s[:, c], p_t[:, c])[0, 1] for c in range(p_s.shape[1])])
    return T ** 2 * ((1 - inter) + (1 - intra))


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_dist_loss_equals_one_minus_pearson_from_numpy(T):
    from datw import dist_loss
    g = torch.Generator().manual_seed(3)
    z_s, z_t = torch.randn(6, 9, generator=g) * 3, torch.randn(6, 9, generator=g) * 3
    assert dist_loss(z_s, z_t, T=T).item() == pytest.approx(naive_dist(z_s, z_t, T), rel=1e-4)


def test_dist_loss_is_zero_for_a_matching_student_and_its_gradient_reaches_only_the_student():
    from datw import dist_loss
    z_t = torch.randn(5, 9)
    assert dist_loss(z_t.clone(), z_t, T=1.0).item() == pytest.approx(0.0, abs=1e-5)
    z_s, z_t = torch.randn(5, 9, requires_grad=True), torch.randn(5, 9, requires_grad=True)
    dist_loss(z_s, z_t).backward()
    assert z_s.grad.abs().sum() > 0 and z_t.grad is None
