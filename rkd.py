"""RKD: Relational Knowledge Distillation (Park et al., CVPR 2019), ViT teacher -> student.

Reading guide
-------------
What: the distance-wise and angle-wise RKD losses of Park et al. ("Relational Knowledge
Distillation", arXiv 1904.05068, Sec. 3.2), used by the dual-teacher paper (arXiv 2511.09469,
its relational-distillation component) to move the ViT teacher's *relations
between samples* into the CNN student.

Idea: a ViT and a CNN embed clips in unrelated spaces (other axes, other widths), so the student
copies no coordinates. It copies how the teacher arranges the batch instead: how far apart two
clips are (distance, normalised by the batch's mean distance) and the angle that three clips
form. Both relations ignore rotation, translation and (for distances after normalisation) scale
of either space, so student and teacher widths may differ.

    psi_D(t_i, t_j)      = ||t_i - t_j||_2 / mu,   mu = mean of ||t_i - t_j|| over pairs i != j
    psi_A(t_i, t_j, t_k) = < e_ij , e_kj >,        e_ij = (t_i - t_j) / ||t_i - t_j||_2
    L_D = mean over all B*B   pairs    of l_delta(psi_D(s..), psi_D(t..))
    L_A = mean over all B*B*B triplets of l_delta(psi_A(s..), psi_A(t..))
    l_delta = smooth-L1 (Huber with delta 1);  L_RKD = w_d * L_D + w_a * L_A,  w_d=25, w_a=50

Our reading: we compute exactly what the authors' official code computes (lenscloth/RKD,
metric/loss.py), which fixes details the equations leave open:
- the mean is over *all* B*B pairs and B*B*B triplets, degenerate ones included (the diagonal
  i == j, and triplets with a repeated index, where a zero vector normalises to zero); they add
  exact zeros on both sides, so they only rescale the loss;
- mu is the mean of the off-diagonal distances (the diagonal is 0 and is left out of mu);
- the teacher side is a constant (the official code builds it under no_grad).
Deviation: none in the values. We write smooth-L1 and the means out instead of calling
F.smooth_l1_loss, so the reductions (which mean, over which pairs) are visible next to the
equations instead of hidden in a default; the tests check both against naive loops.
Left out: RKD on intermediate layers; the paper applies it to the pooled embedding.
Consumes: feats_s["embed"] (B, D_s) and feats_vit["embed"] (B, D_vit); other shapes are flattened.
"""
import torch
import torch.nn.functional as F


def _as_float_matrix(f):
    # (B, ...) -> (B, D) in float32: relations need a vector per sample, and distances of
    # bf16/fp16 embeddings lose most of their digits, so the losses are computed in float32.
    return f.float().reshape(f.shape[0], -1)


def smooth_l1(x, y):
    """Huber loss with delta 1 per element, *not* reduced: 0.5 r^2 if |r| < 1 else |r| - 0.5."""
    r = (x - y).abs()
    # Paper: l_delta (Park et al., Eq. 5). Quadratic near 0, linear far out (robust to outliers).
    return torch.where(r < 1.0, 0.5 * r * r, r - 0.5)


def pairwise_distances(f, eps=1e-12):
    """(B, D) -> (B, B) Euclidean distances, diagonal exactly 0 (as the official code computes)."""
    sq = f.pow(2).sum(dim=1)  # (B,) squared norms ||f_i||^2
    # ||f_i - f_j||^2 = ||f_i||^2 + ||f_j||^2 - 2 <f_i, f_j>: O(B^2) memory instead of the
    # O(B^2 D) of explicit differences. Rounding can make it slightly negative, hence the clamp.
    d2 = (sq[:, None] + sq[None, :] - 2.0 * f @ f.t()).clamp(min=eps)  # (B, B)
    # Trap 1: d sqrt(x)/dx = 1 / (2 sqrt(x)) is inf at x = 0 (the diagonal, duplicate samples).
    # The clamp keeps x >= eps, and clamp's own gradient is 0 below eps, so those entries
    # get gradient 0 instead of 0 * inf = NaN in backward.
    d = d2.sqrt()
    # Trap 2: sqrt saves its *output* for backward, so writing into it in place makes autograd
    # raise "modified by an inplace operation". Clone first, then zero the diagonal
    # (sqrt(eps) = 1e-6 there, but a sample's distance to itself is exactly 0).
    d = d.clone()
    idx = torch.arange(f.shape[0], device=f.device)
    d[idx, idx] = 0.0
    return d


def distance_potential(f):
    """psi_D: (B, D) -> (B, B) pairwise distances divided by their mean over pairs i != j."""
    B = f.shape[0]
    d = pairwise_distances(f)  # (B, B)
    # Paper: mu = 1/|X^2| sum_{i != j} ||t_i - t_j||. Dividing by mu makes psi_D scale-free, so a
    # student need not match the teacher's norm. Note: equals the official d[d > 0].mean()
    # (the clamp keeps off-diagonal entries >= 1e-6 > 0), without its data-dependent shape
    # (boolean indexing forces a GPU -> CPU sync).
    mu = d.sum() / (B * (B - 1))
    return d / mu


def angle_potential(f):
    """psi_A: (B, D) -> (B, B, B), psi[j, i, k] = cos of the angle at f_j between f_i and f_k."""
    e = f[None, :, :] - f[:, None, :]  # (B, B, D): e[j, i] = f_i - f_j, all difference vectors
    # e_ij = (f_i - f_j) / ||f_i - f_j||. F.normalize divides by max(norm, 1e-12), so a zero
    # vector (i == j, or duplicate samples) stays zero and its cosines are 0 instead of NaN.
    # Trap 3: its gradient there is finite but scaled by 1/1e-12; it is multiplied by 0 when the
    # teacher has the same duplicate (then both sides are 0), but a student that collapses two
    # clips the teacher separates receives very large gradients (clip them in the training loop).
    e_hat = F.normalize(e, p=2, dim=2)  # (B, B, D)
    # Trap 4, memory: the result holds B^3 cosines (B=256: 16.8M floats = 64 MiB), the loss
    # keeps several tensors of that size for backward, and e holds B^2 * D floats. Use
    # w_a=0 in rkd_loss to skip the angle term at large batch sizes.
    return torch.bmm(e_hat, e_hat.transpose(1, 2))  # (B, B, B): <e_ij, e_kj> for vertex j


def rkd_distance_loss(f_s, f_t):
    """L_D: smooth-L1 between student and teacher psi_D, mean over all B*B pairs (float32)."""
    B = f_s.shape[0]
    if B < 2 or f_t.shape[0] != B:
        raise ValueError(f"RKD needs the same batch of >= 2 samples on both sides; got student "
                         f"{tuple(f_s.shape)} and teacher {tuple(f_t.shape)} (use drop_last=True).")
    # Autocast off: the Gram trick cancels large numbers, which half precision cannot afford.
    with torch.autocast(device_type=f_s.device.type, enabled=False):
        # The teacher's relations are a fixed target: no gradient flows into the teacher.
        psi_t = distance_potential(_as_float_matrix(f_t.detach()))  # (B, B)
        psi_s = distance_potential(_as_float_matrix(f_s))  # (B, B)
        # Mean written out over all B*B pairs (diagonal included: 0 vs 0), as the official code.
        return smooth_l1(psi_s, psi_t).sum() / (B * B)


def rkd_angle_loss(f_s, f_t):
    """L_A: smooth-L1 between student and teacher psi_A, mean over all B^3 triplets (float32)."""
    B = f_s.shape[0]
    if f_t.shape[0] != B:
        raise ValueError(f"RKD needs the same batch on both sides; got student "
                         f"{tuple(f_s.shape)} and teacher {tuple(f_t.shape)}.")
    with torch.autocast(device_type=f_s.device.type, enabled=False):
        psi_t = angle_potential(_as_float_matrix(f_t.detach()))  # (B, B, B), constant target
        psi_s = angle_potential(_as_float_matrix(f_s))  # (B, B, B)
        # Degenerate triplets (a repeated index) are 0 on both sides and stay in the mean.
        return smooth_l1(psi_s, psi_t).sum() / (B * B * B)


def rkd_loss(f_s, f_t, w_d=25.0, w_a=50.0):
    """L_RKD = w_d * L_D + w_a * L_A (Park et al.'s 25 and 50); w_a=0 skips the O(B^3) term."""
    loss = w_d * rkd_distance_loss(f_s, f_t)
    # Skip, do not multiply by zero: 0 * L_A would still pay the B^3 memory.
    if w_a != 0:
        loss = loss + w_a * rkd_angle_loss(f_s, f_t)
    return loss


if __name__ == "__main__":
    torch.manual_seed(0)
    B, D_t, D_s = 8, 32, 6  # a batch of 8 clips; teacher width 32, student width only 6
    f_t = torch.randn(B, D_t)
    print("RKD demo: a student of width 6 learns the relations of a width-32 teacher.\n")

    # 1) Relations ignore rotation, translation and scale: such a student already scores 0.
    Q, _ = torch.linalg.qr(torch.randn(D_t, D_t))  # random orthogonal matrix (a rotation/flip)
    moved = 3.0 * f_t @ Q + 5.0  # same relations, completely different coordinates
    print(f"rotated*3+5 copy of the teacher: L_D = {rkd_distance_loss(moved, f_t):.2e}, "
          f"L_A = {rkd_angle_loss(moved, f_t):.2e}   (relations identical -> 0)")
    # 2) Coordinates are not copied: MSE between the two is large although RKD is zero.
    print(f"  ...while its MSE to the teacher is {((moved - f_t) ** 2).mean():.1f}: "
          "RKD transfers structure, not features.\n")

    # 3) Fit a free width-6 embedding to the teacher's relations (as a student's head would).
    iu = torch.triu_indices(B, B, offset=1)  # the 28 pairs i < j

    def dist_corr(a, b):
        # Pearson correlation of the pairwise distances: 1 = same geometry up to scale.
        d_a, d_b = pairwise_distances(a)[iu[0], iu[1]], pairwise_distances(b)[iu[0], iu[1]]
        return torch.corrcoef(torch.stack([d_a, d_b]))[0, 1].item()

    f_s = torch.randn(B, D_s, requires_grad=True)
    opt = torch.optim.Adam([f_s], lr=0.05)
    for step in range(301):
        l_d, l_a = rkd_distance_loss(f_s, f_t), rkd_angle_loss(f_s, f_t)
        loss = 25.0 * l_d + 50.0 * l_a  # the authors' weights, as in rkd_loss
        if step % 100 == 0:
            print(f"step {step:3d}: L_D = {l_d:.4f}  L_A = {l_a:.4f}  L_RKD = {loss:.3f}  "
                  f"distance correlation = {dist_corr(f_s.detach(), f_t):.3f}")
        opt.zero_grad()
        loss.backward()
        opt.step()
    print("\n6 dims cannot hold the geometry of 8 points in 32 dims exactly (7 would), but the\n"
          "student now arranges the batch like the teacher without sharing a single coordinate.")
