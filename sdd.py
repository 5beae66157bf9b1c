"""SDD: Structure Discrepancy-aware Distillation (fixed phi, residual target, SDB, loss).

Reading guide
-------------
What: the paper's SDD (arXiv 2511.09469, the method section's Structure Discrepancy-aware
Distillation and its residual features): a training-only Structure Discrepancy Branch (SDB) on the
student's last-stage map learns to predict what the ViT teacher's features add to the CNN
teacher's, instead of copying ViT features that a CNN cannot reproduce.

Idea: bring both teachers' maps to the student's grid and one width with phi, subtract, and
regress the difference from the student's map through a small non-local + SE branch:
    f_res = phi_vit(f_vit) - phi_cnn(f_cnn)          (paper; detached: a fixed target)
    pred  = Proj(SE(NonLocal(f_s)))                   (SDB; dropped after training)
    L_SDD = 1/N sum (pred - f_res)^2                  (MSE, N = B * width * L' * H' * W')
Gradients of L_SDD reach the student's map f_s through the SDB: the backbone must encode the
information needed to predict f_res. The deployable student never contains the SDB or phi.

Our reading (the paper gives f_res only):
- phi is FIXED, not learned: two learned projections trained by this loss alone can make the
  residual trivially zero (e.g. both map to 0), and the demo shows it happen. Ours:
  (1) adaptive average pooling to the student's grid (L', H', W') -- it also upsamples by
      repetition when a teacher's grid is coarser (e.g. MViTv2-S L'=8 vs X3D-S L'=13);
  (2) a seeded random orthogonal channel map C_k -> width, stored as a buffer: it keeps the
      geometry of the channel vectors (an isometry when width >= C_k), gives ViT and CNN a
      common width, and needs no training (Johnson-Lindenstrauss-style, as in random features);
  (3) LayerNorm over channels at each position, without affine: both teachers get zero mean
      and unit variance per position, so neither dominates the difference by raw scale
      (ViT tokens after LayerNorm and CNN maps after ReLU differ by large factors).
  Note: the channel axes of a ViT and a CNN correspond to nothing in common, so f_res is "the
  ViT's view minus the CNN's view" in a shared random basis, not a per-channel semantic
  difference. A learned alignment with its own objective is the alternative we left out.
- SDB: non-local block (Wang et al., CVPR 2018; embedded Gaussian, inner width C_s/2), then
  squeeze-and-excitation (Hu et al., CVPR 2018; reduction 4), then a 1x1x1 conv to `width`.
- Ablation: target="vit" regresses phi_vit(f_vit) itself (plain feature mimicry), the
  baseline the paper's residual is claimed to beat.
Consumes: feats_s["map"], feats_vit["map"] (tokens already reshaped to (B, C, L', H', W') by
models.py), feats_cnn["map"].
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Phi(nn.Module):
    """Fixed map of a teacher's (B, C_k, L, H, W) to (B, width, L', H', W'); no parameters."""

    def __init__(self, in_channels, width, seed=0):
        super().__init__()
        # Own generator: the same seed gives the same map on every rank and every run, without
        # touching (or depending on) the global RNG state.
        gen = torch.Generator().manual_seed(seed)
        P = nn.init.orthogonal_(torch.empty(width, in_channels), generator=gen)  # (width, C_k)
        # A buffer, not a Parameter: saved and moved with .to(), invisible to the optimizer.
        self.register_buffer("P", P)

    def forward(self, f, grid):
        B, C, L, H, W = f.shape
        if C != self.P.shape[1]:
            raise ValueError(f"phi expects {self.P.shape[1]} channels, got map {tuple(f.shape)}; "
                             "build SDDHead with the teacher map's channel count.")
        # float32, autocast off: LayerNorm statistics of half-precision maps are too coarse.
        with torch.autocast(device_type=f.device.type, enabled=False):
            f = F.adaptive_avg_pool3d(f.float(), tuple(grid))  # (B, C, L', H', W')
            # Pooling and a channel map are both linear and commute; pooling first is cheaper.
            f = torch.einsum("wc,bcthx->bwthx", self.P.float(), f)  # (B, width, L', H', W')
            # Per-position LayerNorm over channels, no affine (nothing to learn). eps keeps an
            # all-equal position (e.g. all-zero after ReLU) finite: it maps to 0.
            f = F.layer_norm(f.movedim(1, -1), (f.shape[1],), eps=1e-5).movedim(-1, 1)
        return f  # (B, width, L', H', W')


@torch.no_grad()  # the target is a constant: teachers are frozen and phi has nothing to learn
def residual_target(f_vit, f_cnn, phi_vit, phi_cnn, grid):
    """f_res = phi_vit(f_vit) - phi_cnn(f_cnn) on the student's grid (L', H', W'); detached."""
    # Paper: the residual is what the ViT's features add beyond the CNN teacher's.
    return phi_vit(f_vit, grid) - phi_cnn(f_cnn, grid)  # (B, width, L', H', W')


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block: z_i = x_i + W_z sum_j softmax_j(q_i . k_j) v_j."""

    def __init__(self, channels, inner_channels):
        super().__init__()
        conv = lambda c_in, c_out: nn.Conv3d(c_in, c_out, kernel_size=1)  # 1x1x1: per position
        # Query, key and value embeddings at reduced width (Wang et al. use half the channels).
        # Note: Wang et al. call them theta, phi and g; in this file phi names only the fixed
        # teacher projection (Phi above), so the non-local embeddings take attention's names.
        self.query, self.key, self.value = (conv(channels, inner_channels) for _ in range(3))
        self.W_z = conv(inner_channels, channels)
        # Note: Wang et al. zero-init the output so a block inserted into a pretrained backbone
        # starts as identity; ours sits in a separate fresh branch, so default init is fine.

    def forward(self, x):
        B, C, L, H, W = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, C_i, L, H, W) -> (B, N, C_i), N = L*H*W
        k = self.key(x).flatten(2)  # (B, C_i, N)
        v = self.value(x).flatten(2).transpose(1, 2)  # (B, N, C_i)
        # Embedded Gaussian: f(x_i, x_j) = exp(q_i . k_j), normalised by C(x) = sum_j f,
        # i.e. a softmax over all N positions: every position sees the whole clip (global
        # context, which the CNN student's local convolutions lack). Wang et al. use no 1/sqrt(d).
        attn = torch.softmax(q @ k, dim=-1)  # (B, N, N); memory O(N^2) = 325^2 for X3D-S
        y = (attn @ v).transpose(1, 2).reshape(B, -1, L, H, W)  # (B, N, C_i) -> (B, C_i, L, H, W)
        return x + self.W_z(y)  # residual connection: the block adds context to x


class SqueezeExcitation(nn.Module):
    """SE: rescale channels by gates computed from the clip-level average (Hu et al.)."""

    def __init__(self, channels, reduction=4):
        super().__init__()
        # Reduction 4, not Hu et al.'s 16: the tiny preset has 24-channel maps (16 -> 1 unit).
        hidden = max(1, channels // reduction)
        self.fc1, self.fc2 = nn.Linear(channels, hidden), nn.Linear(hidden, channels)

    def forward(self, x):
        s = x.mean(dim=(2, 3, 4))  # squeeze: (B, C, L, H, W) -> (B, C)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))  # excitation: gates in (0, 1), (B, C)
        return x * s[:, :, None, None, None]  # (B, C, 1, 1, 1) broadcasts over the clip


class StructureDiscrepancyBranch(nn.Module):
    """SDB: student map (B, C_s, L', H', W') -> predicted residual (B, width, L', H', W')."""

    def __init__(self, in_channels, out_channels, nl_reduction=2, se_reduction=4):
        super().__init__()
        self.non_local = NonLocalBlock(in_channels, max(1, in_channels // nl_reduction))
        self.se = SqueezeExcitation(in_channels, se_reduction)
        # 1x1x1 projection to the residual's width (the paper's phi-aligned common space).
        self.proj = nn.Conv3d(in_channels, out_channels, kernel_size=1)

    def forward(self, f_s):
        return self.proj(self.se(self.non_local(f_s)))


def sdd_loss(pred, target):
    """L_SDD = 1/N sum (pred - target)^2 over all N elements; scalar, float32."""
    if pred.shape != target.shape:
        raise ValueError(f"SDB output {tuple(pred.shape)} != target {tuple(target.shape)}; "
                         "the SDB's out_channels must equal phi's width.")
    with torch.autocast(device_type=pred.device.type, enabled=False):
        # Mean written out over batch, channels and positions: the loss scale then does not
        # depend on the grid size or width, so one beta fits every preset.
        return (pred.float() - target.detach().float()).pow(2).sum() / pred.numel()


class SDDHead(nn.Module):
    """phi_vit + phi_cnn (fixed) + SDB (trained); forward(f_s, f_vit, f_cnn) -> (pred, target)."""

    def __init__(self, c_s, c_vit, c_cnn, width=None, target="residual", seed=0):
        super().__init__()
        if target not in ("residual", "vit"):
            raise ValueError(f"target must be 'residual' (paper) or 'vit' (ablation); "
                             f"got {target!r}")
        # Default width = the student's channels: the SDB's projection is then square and the
        # target's size follows the student's capacity (paper preset: 768 and 192 -> 192).
        width = c_s if width is None else width
        self.target = target
        # Different seeds, so two teachers of equal width never share a projection by accident.
        self.phi_vit, self.phi_cnn = Phi(c_vit, width, seed), Phi(c_cnn, width, seed + 1)
        self.sdb = StructureDiscrepancyBranch(c_s, width)

    def forward(self, f_s, f_vit, f_cnn=None):
        grid = f_s.shape[2:]  # (L', H', W') of the student's last stage: everything meets here
        pred = self.sdb(f_s)  # (B, width, L', H', W'), trained; gradients flow into f_s
        if self.target == "residual":
            if f_cnn is None:
                raise ValueError("target='residual' needs the CNN teacher's map f_cnn.")
            target = residual_target(f_vit, f_cnn, self.phi_vit, self.phi_cnn, grid)
        else:
            with torch.no_grad():  # ablation: plain mimicry of the (aligned) ViT feature
                target = self.phi_vit(f_vit, grid)
        return pred, target


if __name__ == "__main__":
    torch.manual_seed(0)
    # 1) The paper preset's maps: X3D-S student 13x5x5, MViTv2-S 8x7x7, X3D-M (stage 4) 16x7x7.
    f_s = torch.randn(2, 192, 13, 5, 5)
    f_vit = 0.5 * torch.randn(2, 768, 8, 7, 7)  # ViT tokens: small scale after LayerNorm
    f_cnn = 3.0 * F.relu(torch.randn(2, 192, 16, 7, 7))  # CNN map after ReLU: larger, >= 0
    head = SDDHead(192, 768, 192)
    pred, f_res = head(f_s, f_vit, f_cnn)
    n_sdb = sum(p.numel() for p in head.parameters())
    print("SDD on the paper preset's map sizes (batch 2)")
    print(f"  student {tuple(f_s.shape)}, ViT {tuple(f_vit.shape)}, CNN {tuple(f_cnn.shape)}")
    for name, f, phi in (("ViT", f_vit, head.phi_vit), ("CNN", f_cnn, head.phi_cnn)):
        a = phi(f, f_s.shape[2:])
        print(f"  phi_{name}: {tuple(f.shape)} -> {tuple(a.shape)}, "
              f"scale per position {f.std(1).mean():.2f} -> {a.std(1, unbiased=False).mean():.2f}")
    print(f"  residual target {tuple(f_res.shape)}, requires_grad={f_res.requires_grad}; "
          f"SDB prediction {tuple(pred.shape)}")
    print(f"  trainable parameters: phi {sum(p.numel() for p in head.phi_vit.parameters())}, "
          f"SDB {n_sdb:,} (training only; X3D-S itself has 3.79M)\n")

    # 2) Why phi is fixed: let two *learned* 1x1x1 projections chase the SDD loss (tiny maps).
    f_s, f_vit, f_cnn = (torch.randn(4, *shape) for shape in
                         ((24, 8, 2, 2), (64, 4, 4, 4), (48, 8, 2, 2)))  # the tiny preset's maps
    for name, learned in (("learned phi", True), ("fixed phi  ", False)):
        torch.manual_seed(0)
        head = SDDHead(24, 64, 48)
        lin_vit, lin_cnn = nn.Conv3d(64, 24, 1), nn.Conv3d(48, 24, 1)  # the trap: a trainable phi
        params = [*head.parameters(), *(lin_vit.parameters() if learned else []),
                  *(lin_cnn.parameters() if learned else [])]
        opt = torch.optim.Adam(params, lr=1e-2)
        for step in range(201):
            if learned:
                pred = head.sdb(f_s)  # same SDB, but the target now depends on trainable weights
                pool = lambda f: F.adaptive_avg_pool3d(f, f_s.shape[2:])
                target = lin_vit(pool(f_vit)) - lin_cnn(pool(f_cnn))
                loss = (pred - target).pow(2).mean()  # no detach: the gradient reaches the target
            else:
                pred, target = head(f_s, f_vit, f_cnn)
                loss = sdd_loss(pred, target)
            if step % 100 == 0:
                print(f"  {name} step {step:3d}: L_SDD = {loss:.3f}, mean-square residual "
                      f"= {target.pow(2).mean():.3f}")
            opt.zero_grad()
            loss.backward()
            opt.step()
    print("  A learned phi shrinks the residual itself towards 0 (nothing left to transfer);\n"
          "  the fixed phi keeps the target, and the SDB has to learn it from the student's map.")
