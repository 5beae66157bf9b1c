"""Model builders shared by the test files: meta-device models, native batches, random weights."""
import torch

import models

TINY = ("x3d_s_tiny", "x3d_m_tiny", "mvit_tiny")
FULL = ("x3d_xs", "x3d_s", "x3d_m", "x3d_l", "mvit_v2_s", "swin3d_t", "r3d_18", "mc3_18",
        "r2plus1d_18", "s3d")


def build_meta(name, num_classes=400):
    """The full model on the meta device: real shapes, no memory, no init cost."""
    with torch.device("meta"):
        return models.build_model(name, num_classes)


def native_batch(spec, batch=2, device="cpu"):
    return torch.randn(batch, 3, spec.frames, spec.size, spec.size, device=device)


def randomize_(module, seed=0):
    """Random weights *and* BatchNorm statistics, so an equivalence test exercises every tensor
    (a fresh X3D zero-initializes each residual branch's last BN, which would hide the branches)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.dtype.is_floating_point:
                r = torch.randn(t.shape, generator=g) * 0.2
                t.copy_(r.abs() + 0.5 if name.endswith("running_var") else r)
    return module
