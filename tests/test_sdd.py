"""sdd.py as an executable specification: shapes per preset, gradient flow, oracles, export."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sdd import (NonLocalBlock, Phi, SDDHead, StructureDiscrepancyBranch, residual_target,
                 sdd_loss)

# (student map, ViT map, CNN map) without the batch dim; independent of models.py on purpose.
MAP_SHAPES = {
    # X3D-S 13x160 stage 4 | MViTv2-S 16x224 tokens as a map | X3D-M 16x224 stage 4
    "paper": ((192, 13, 5, 5), (768, 8, 7, 7), (192, 16, 7, 7)),
    # same, CNN map taken after X3D-M's conv_5 (432 channels)
    "paper_conv5": ((192, 13, 5, 5), (768, 8, 7, 7), (432, 16, 7, 7)),
    "tiny": ((24, 8, 2, 2), (64, 4, 4, 4), (48, 8, 2, 2)),
    # mc3_18 student 16x112 | MViTv2-S | r2plus1d_18 (temporal stride 8)
    "torchvision": ((512, 16, 7, 7), (768, 8, 7, 7), (512, 2, 7, 7)),
    # teachers coarser than the student in every axis (phi must upsample)
    "coarse_teachers": ((16, 6, 4, 4), (8, 2, 1, 1), (8, 3, 2, 2)),
}


def maps(name, B=2, requires_grad=False):
    return [torch.randn(B, *shape, requires_grad=requires_grad) for shape in MAP_SHAPES[name]]


@pytest.mark.E8
@pytest.mark.parametrize("name", list(MAP_SHAPES))
@pytest.mark.parametrize("width", [None, 32])
def test_shapes_for_every_preset_map_size(name, width):
    f_s, f_vit, f_cnn = maps(name)
    head = SDDHead(f_s.shape[1], f_vit.shape[1], f_cnn.shape[1], width=width)
    pred, target = head(f_s, f_vit, f_cnn)
    expected = (2, width or f_s.shape[1], *f_s.shape[2:])
    assert pred.shape == target.shape == expected
    assert torch.isfinite(sdd_loss(pred, target))


@pytest.mark.E8
def test_target_carries_no_gradient_and_teachers_get_none():
    f_s, f_vit, f_cnn = maps("tiny", requires_grad=True)
    head = SDDHead(24, 64, 48)
    for target_kind in ("residual", "vit"):
        head.target = target_kind
        pred, target = head(f_s, f_vit, f_cnn)
        assert not target.requires_grad
        sdd_loss(pred, target).backward()
    assert f_vit.grad is None and f_cnn.grad is None


@pytest.mark.E8
def test_branch_receives_gradients_and_passes_them_into_the_student_map():
    f_s, f_vit, f_cnn = maps("tiny")
    student_layer = nn.Conv3d(24, 24, 3, padding=1)  # stands in for the student's last stage
    head = SDDHead(24, 64, 48)
    pred, target = head(student_layer(f_s), f_vit, f_cnn)
    sdd_loss(pred, target).backward()
    for name, p in head.sdb.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert student_layer.weight.grad.abs().sum() > 0


@torch.no_grad()
def naive_non_local(nl, x):
    """z_i = x_i + W_z (sum_j f(x_i, x_j) g(x_j) / C(x)) per position i (Wang et al., Eq. 1)."""
    B, C, T, H, W = x.shape
    emb = lambda conv, v: conv.weight[:, :, 0, 0, 0] @ v + conv.bias  # a 1x1x1 conv at one position
    positions = [(t, h, w) for t in range(T) for h in range(H) for w in range(W)]
    z = torch.empty_like(x)
    for b in range(B):
        at = lambda p: x[b, :, p[0], p[1], p[2]]  # (C,) feature vector at position p
        for i in positions:
            # embedded Gaussian f(x_i, x_j) = exp(q(x_i)^T k(x_j))
            f = [math.exp(float(emb(nl.query, at(i)) @ emb(nl.key, at(j)))) for j in positions]
            y_i = sum(f_ij * emb(nl.value, at(j)) for f_ij, j in zip(f, positions)) / sum(f)
            z[b, :, i[0], i[1], i[2]] = at(i) + emb(nl.W_z, y_i)
    return z


@pytest.mark.E7
def test_non_local_block_equals_naive_per_position_loop():
    torch.manual_seed(1)
    nl = NonLocalBlock(4, 2).double()
    x = torch.randn(2, 4, 2, 2, 3, dtype=torch.float64)
    assert torch.allclose(nl(x), naive_non_local(nl, x), atol=1e-10)


@pytest.mark.E7
def test_non_local_block_gives_every_position_context_from_the_whole_clip():
    nl = NonLocalBlock(4, 2)
    x = torch.randn(1, 4, 3, 2, 2)
    moved = x.clone()
    moved[0, :, 0, 0, 0] += 1.0  # change the clip at one position ...
    with torch.no_grad():
        changed = (nl(moved) - nl(x)).abs().sum(dim=1)  # (1, L, H, W)
    assert (changed > 0).all()  # ... and the output moves at every position, near or far


@pytest.mark.E8
def test_branch_is_non_local_then_se_then_projection():
    sdb = StructureDiscrepancyBranch(8, 5)
    x = torch.randn(2, 8, 3, 2, 2)
    z = sdb.non_local(x)
    gate = torch.sigmoid(sdb.se.fc2(F.relu(sdb.se.fc1(z.mean(dim=(2, 3, 4))))))  # (B, C)
    assert torch.allclose(sdb(x), sdb.proj(z * gate[:, :, None, None, None]), atol=1e-6)


@pytest.mark.E8
def test_phi_has_no_trainable_parameters_and_training_cannot_move_the_target():
    f_s, f_vit, f_cnn = maps("tiny")
    head = SDDHead(24, 64, 48)
    assert list(head.phi_vit.parameters()) == [] and list(head.phi_cnn.parameters()) == []
    pred, target_before = head(f_s, f_vit, f_cnn)
    opt = torch.optim.SGD(head.parameters(), lr=1.0)
    sdd_loss(pred, target_before).backward()
    opt.step()  # every trainable tensor of the head moves ...
    assert torch.equal(head(f_s, f_vit, f_cnn)[1], target_before)  # ... the target does not
    # ... and the residual is far from trivially zero for unrelated teachers (about 2 per element).
    assert target_before.pow(2).mean() > 1.0


@pytest.mark.E6
def test_phi_brings_teachers_to_a_common_scale_and_is_deterministic():
    f = torch.randn(2, 64, 4, 4, 4)
    phi = Phi(64, 24, seed=3)
    a = phi(f, (8, 2, 2))
    assert torch.allclose(a.mean(dim=1), torch.zeros(2, 8, 2, 2), atol=1e-5)  # per position
    assert torch.allclose(a.var(dim=1, unbiased=False), torch.ones(2, 8, 2, 2), atol=1e-3)
    assert torch.allclose(phi(100.0 * f, (8, 2, 2)), a, atol=1e-4)  # raw scale is removed
    assert torch.equal(Phi(64, 24, seed=3).P, phi.P)  # same seed -> same map on every rank
    assert not torch.equal(Phi(64, 24, seed=4).P, phi.P)
    # Orthogonal: rows orthonormal when narrowing, columns orthonormal (isometry) when widening.
    assert torch.allclose(phi.P @ phi.P.t(), torch.eye(24), atol=1e-5)
    wide = Phi(16, 40).P
    assert torch.allclose(wide.t() @ wide, torch.eye(16), atol=1e-5)


@pytest.mark.E6
def test_phi_equals_pool_then_projection_then_layernorm():
    f = torch.randn(2, 12, 6, 5, 5)
    phi = Phi(12, 12)
    pooled = F.adaptive_avg_pool3d(f, (3, 2, 2))  # (B, 12, 3, 2, 2)
    proj = torch.einsum("wc,bcthx->bwthx", phi.P, pooled)
    var = proj.var(1, unbiased=False, keepdim=True)
    ref = (proj - proj.mean(1, keepdim=True)) / torch.sqrt(var + 1e-5)  # LayerNorm, eps 1e-5
    assert torch.allclose(phi(f, (3, 2, 2)), ref, atol=1e-5)


@pytest.mark.E6
def test_residual_target_is_phi_vit_minus_phi_cnn_and_carries_no_gradient():
    _, f_vit, f_cnn = maps("tiny", requires_grad=True)
    phi_vit, phi_cnn, grid = Phi(64, 24, seed=0), Phi(48, 24, seed=1), (8, 2, 2)
    f_res = residual_target(f_vit, f_cnn, phi_vit, phi_cnn, grid)
    assert f_res.shape == (2, 24, 8, 2, 2) and not f_res.requires_grad
    with torch.no_grad():
        assert torch.allclose(f_res, phi_vit(f_vit, grid) - phi_cnn(f_cnn, grid))


@pytest.mark.E6
def test_phi_is_a_fixed_buffer_that_no_optimizer_sees():
    phi = Phi(64, 24)
    assert list(phi.parameters()) == []
    assert set(phi.state_dict()) == {"P"} and phi.P.shape == (24, 64)  # saved with the head


@pytest.mark.E8
def test_residual_and_vit_targets():
    f_s, f_vit, f_cnn = maps("tiny")
    head = SDDHead(24, 64, 48)
    grid = f_s.shape[2:]
    expected = head.phi_vit(f_vit, grid) - head.phi_cnn(f_cnn, grid)
    assert torch.equal(residual_target(f_vit, f_cnn, head.phi_vit, head.phi_cnn, grid), expected)
    assert torch.equal(head(f_s, f_vit, f_cnn)[1], expected)
    mimic = SDDHead(24, 64, 48, target="vit")
    assert torch.equal(mimic(f_s, f_vit, None)[1], mimic.phi_vit(f_vit, grid))  # no CNN needed


@pytest.mark.E8
def test_sdd_loss_is_mean_squared_error_over_all_elements():
    pred, target = torch.randn(2, 5, 3, 2, 2), torch.randn(2, 5, 3, 2, 2)
    hand = sum(float(v) ** 2 for v in (pred - target).flatten()) / pred.numel()
    assert sdd_loss(pred, target).item() == pytest.approx(hand, rel=1e-5)
    assert torch.allclose(sdd_loss(pred, target), F.mse_loss(pred, target, reduction="mean"))


@pytest.mark.E8
def test_sdd_loss_sends_no_gradient_into_its_target():
    pred, target = (torch.randn(2, 5, 3, 2, 2, requires_grad=True) for _ in range(2))
    sdd_loss(pred, target).backward()
    assert target.grad is None and pred.grad.abs().sum() > 0


@pytest.mark.E8
def test_float32_under_autocast():
    f_s, f_vit, f_cnn = (f.bfloat16() for f in maps("tiny"))
    head = SDDHead(24, 64, 48).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pred, target = head(f_s, f_vit, f_cnn)
        loss = sdd_loss(pred, target)
    assert target.dtype == loss.dtype == torch.float32 and torch.isfinite(loss)


@pytest.mark.E8
def test_exported_student_contains_no_branch_or_phi_weights():
    class TinyStudent(nn.Module):  # a plain student: logits only, as models.py builds them
        def __init__(self):
            super().__init__()
            self.stage = nn.Conv3d(3, 24, 3, stride=(1, 4, 4), padding=1)
            self.fc = nn.Linear(24, 5)

        def forward(self, x):
            return self.fc(self.stage(x).mean(dim=(2, 3, 4)))

    class Distiller(nn.Module):  # what train.py may wrap in one DDP module
        def __init__(self):
            super().__init__()
            self.student, self.sdd = TinyStudent(), SDDHead(24, 64, 48)

    model = Distiller()
    f_s = model.student.stage(torch.randn(2, 3, 8, 8, 8))  # (2, 24, 8, 2, 2), the tapped map
    pred, target = model.sdd(f_s, *maps("tiny")[1:])
    sdd_loss(pred, target).backward()
    exported = model.student.state_dict()
    assert set(exported) == {"stage.weight", "stage.bias", "fc.weight", "fc.bias"}
    head_tensors = {t.data_ptr() for t in model.sdd.state_dict().values()}
    assert not head_tensors & {t.data_ptr() for t in exported.values()}
    TinyStudent().load_state_dict(exported, strict=True)  # loads into a bare student


@pytest.mark.E8
def test_errors_name_the_mismatch():
    with pytest.raises(ValueError, match="target must be"):
        SDDHead(24, 64, 48, target="cnn")
    with pytest.raises(ValueError, match="channels"):
        Phi(64, 24)(torch.randn(1, 32, 2, 2, 2), (2, 2, 2))
    with pytest.raises(ValueError, match="f_cnn"):
        SDDHead(24, 64, 48)(*maps("tiny")[:2])
    with pytest.raises(ValueError, match="out_channels"):
        sdd_loss(torch.randn(1, 3, 2, 2, 2), torch.randn(1, 4, 2, 2, 2))
