"""Video models for dual-teacher distillation: X3D (ours), torchvision's MViTv2 and CNNs, feature
taps, input adapters, presets, and honest cost counting.

Reading guide
-------------
Paper (arXiv 2511.09469; walkthrough "Architectures: Heterogeneous vs. Structurally Similar
Teachers" and "Efficiency and Deployment"): a heterogeneous ViT teacher (MViTv2-S) and a
structurally similar CNN teacher (X3D-M) distil into a lightweight CNN student (X3D-S). The paper's
efficiency claim is X3D-S against MViTv2-S: ~89% fewer parameters (3.79M vs 34.54M; the walkthrough
quotes 3.76M) and ~96% fewer multiply-accumulates per view (1.96 vs 64.22 GMACs).
`python models.py` prints these figures for every preset.

What is in this file, top to bottom:
  1. Input specs and the adapter: every model declares its native input (`input_spec(name)`);
     `adapt_input(clip, spec)` turns the data loader's uint8 clip into that input (frames picked by
     uniform index selection, resized only when the size differs, normalized).
  2. X3D, written here with the module names of pytorchvideo's `create_x3d`, so that pytorchvideo's
     published Kinetics-400 checkpoints load unchanged (tests/test_models.py proves it against
     pytorchvideo 0.1.5). X3D-XS, -S and -M are one network (same weights' shapes) fed different
     clips; X3D-L is deeper.
  3. Model configurations, including the tiny CPU variants (`x3d_s_tiny` student, `x3d_m_tiny` CNN
     teacher, `mvit_tiny` ViT teacher): the same classes (our X3D, torchvision's MViT) at toy sizes.
  4. `build_model(name, num_classes, pretrained=False)`: plain modules that return logits;
     pretrained = True (download Kinetics-400 weights) or a local checkpoint path; the classifier is
     replaced for `num_classes`.
  5. `FeatureTap(model)`: returns `(logits, {"map": (B, C, T', H', W'), "embed": (B, D)})` through
     forward hooks that exist only during its own forward call, so the wrapped plain module (the
     deployable student) keeps its state_dict keys and behaviour; `feature_dims` gives C and D.
  6. `PRESETS`: which ViT teacher, CNN teacher and student each preset uses, and the clip the data
     loader must deliver (`tiny`, `paper`, `torchvision`; DESIGN.md section 8).
  7. Cost: `count_params`, `count_gmacs` (multiply-accumulates per view, attention matmuls
     included) and `cpu_latency_ms` (median CPU latency per clip).

Feature dict produced here and consumed elsewhere: `"map"` by sdd.py (the SDB predicts the residual
between the teachers' maps from the student's map), `"embed"` by rkd.py (relations between samples).

Our interpretations and deviations (the paper does not specify these):
  - Note: which features. "map" is the last stage's output (X3D: res5, before the head's 1x1x1 conv;
    MViT: the final-norm patch tokens on the last token grid, class token removed; 3D ResNets:
    layer4; S3D: features; Swin3D: the final-norm tokens); "embed" is exactly the vector the
    classifier reads (X3D: the 2048-d projected pool; MViTv2-S: the class token; mvit_tiny: the
    mean of the patch tokens, see `MeanPoolMViT`; the others: the global average), which a test
    checks by re-applying each model's own classifier.
  - Note: our X3D head pools with a global average instead of pytorchvideo's `AvgPool3d`, whose
    kernel is baked from the training crop. At the native input that kernel covers the whole map,
    so both are the same function (the test checks equal logits); at other sizes ours still gives
    one prediction per clip, where pytorchvideo's would average sliding windows after a ReLU.
  - Note: X3D-S is fed 13x160x160 (its training crop and the input of the published 1.96 GMACs);
    pytorchvideo's own evaluation recipe uses a 182 px short side. Both work here.
  - Note: on CPU our X3D computes in channels-last layout (about 2x faster depthwise 3D convs with
    oneDNN; same values), see `X3D.forward`.
  - Note: the tiny variants are ours, sized so that the whole default CPU run takes minutes; the
    table above `_X3D_CONFIGS` gives their widths, depths and measured train-step times. From
    scratch the tiny ViT teacher needs spatial augmentation, mean pooling of its tokens and more
    epochs than the CNNs (see `_mvit_tiny`); measured numbers are in RESULTS.md.
Deliberately left out: multi-GPU wrappers, torch.compile, mixed precision (train.py's business);
video models other than the X3D sizes and the six torchvision ones named in `_INPUT_SPECS`.
"""
import copy
import math
import pickle
import statistics
import time
from typing import NamedTuple, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.models.video as tv_video
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.video.mvit import MSBlockConfig, MViT
from torchvision.models.video.resnet import VideoResNet
from torchvision.models.video.s3d import S3D
from torchvision.models.video.swin_transformer import SwinTransformer3d


# ---------------------------------------------------------------------------------------------
# 1. Input specs and the adapter
# ---------------------------------------------------------------------------------------------
class InputSpec(NamedTuple):
    """A model's native input: `frames` x `size` x `size` RGB, normalized with `mean` / `std`."""

    frames: int
    size: int
    mean: tuple
    std: tuple


# Normalization constants from the published recipes (torchvision's weight transforms and
# pytorchvideo's X3D hub entries); a checkpoint only works with the statistics it was trained on.
_KINETICS_X3D = ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225))  # pytorchvideo X3D, torchvision MViT
_KINETICS_R3D = ((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989))  # torchvision CNNs
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # torchvision Swin3D

_INPUT_SPECS = {
    # name: (frames, size, (mean, std))
    # X3D: pytorchvideo's published inputs (XS 4x160, S 13x160, M 16x224, L 16x312).
    "x3d_xs": (4, 160, _KINETICS_X3D),
    "x3d_s": (13, 160, _KINETICS_X3D),
    "x3d_m": (16, 224, _KINETICS_X3D),
    "x3d_l": (16, 312, _KINETICS_X3D),
    # torchvision: MViTv2-S only accepts 16x224x224 (its relative position tables are sized for it);
    # the 3D ResNets were trained at 112 px; every published GFLOPS figure is for 16 frames.
    "mvit_v2_s": (16, 224, _KINETICS_X3D),
    "swin3d_t": (16, 224, _IMAGENET),
    "s3d": (16, 224, _KINETICS_R3D),
    "r3d_18": (16, 112, _KINETICS_R3D),
    "mc3_18": (16, 112, _KINETICS_R3D),
    "r2plus1d_18": (16, 112, _KINETICS_R3D),
    # Tiny CPU variants (ours): the teachers see the tiny preset's whole 8x32x32 clip; the student
    # a smaller one, 6x24, as in the paper preset (X3D-S 13x160 vs 16x224: 0.81 of the frames,
    # 0.71 of the side; here 0.75 and 0.75).
    "mvit_tiny": (8, 32, _KINETICS_X3D),
    "x3d_m_tiny": (8, 32, _KINETICS_X3D),
    "x3d_s_tiny": (6, 24, _KINETICS_X3D),
}
MODEL_NAMES = tuple(_INPUT_SPECS)


def input_spec(name: str) -> InputSpec:
    """The native input of model `name` (see the table `_INPUT_SPECS` for where each comes from)."""
    if name not in _INPUT_SPECS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    frames, size, (mean, std) = _INPUT_SPECS[name]
    return InputSpec(frames, size, mean, std)


def adapt_input(clip: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """uint8 clips (B, 3, T, H, W) -> normalized float (B, 3, spec.frames, spec.size, spec.size).

    One decoded clip feeds all three models (DESIGN.md section 3); this turns it into each model's
    native input. Frames are chosen by uniform index selection (16 -> 13 keeps frames
    0, 1, 2, 4, 5, ...; fewer frames than asked repeat some), which keeps the clip's time span.
    The data loader delivers square crops; a non-square clip would be stretched to a square.
    """
    if clip.dtype != torch.uint8 or clip.dim() != 5 or clip.shape[1] != 3:
        raise TypeError(
            f"adapt_input expects a uint8 batch (B, 3, T, H, W) as the data loader yields it; "
            f"got {clip.dtype} {tuple(clip.shape)}"
        )
    B, C, T, H, W = clip.shape
    if T != spec.frames:
        # Select on uint8 before converting: 4x less memory traffic than selecting floats.
        idx = torch.linspace(0, T - 1, spec.frames, device=clip.device).round().long()
        clip = clip.index_select(2, idx)  # (B, 3, T, H, W) -> (B, 3, frames, H, W)
    x = clip.float()  # the only uint8 -> float conversion
    if (H, W) != (spec.size, spec.size):
        # Resize frame by frame; antialias so that shrinking 224 -> 160 does not alias.
        Tn = x.shape[2]
        x = x.transpose(1, 2).reshape(B * Tn, C, H, W)  # (B, 3, T, H, W) -> (B*T, 3, H, W)
        x = F.interpolate(x, size=(spec.size, spec.size), mode="bilinear", align_corners=False,
                          antialias=True)
        x = x.reshape(B, Tn, C, spec.size, spec.size).transpose(1, 2)  # -> (B, 3, T, S, S)
        x = x.contiguous()
    # (x / 255 - mean) / std, folded into one subtract and one multiply done in place.
    mean = torch.tensor(spec.mean, device=x.device).view(1, 3, 1, 1, 1) * 255.0
    inv_std = 1.0 / (torch.tensor(spec.std, device=x.device).view(1, 3, 1, 1, 1) * 255.0)
    return x.sub_(mean).mul_(inv_std)


# ---------------------------------------------------------------------------------------------
# 2. X3D (Feichtenhofer, CVPR 2020), module names as in pytorchvideo's create_x3d
# ---------------------------------------------------------------------------------------------
# Layout (attribute names are the state_dict keys of pytorchvideo's checkpoints):
#   blocks[0]     stem: spatial 1x3x3 conv (stride 2), depthwise temporal 5x1x1 conv, BN, ReLU
#   blocks[1..4]  stages res2..res5: residual bottlenecks 1x1x1 -> depthwise 3x3x3 (+SE) -> 1x1x1
#   blocks[5]     head: 1x1x1 conv, BN, ReLU, global average pool, 1x1x1 conv, ReLU, dropout, linear
def _round_width(width: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of `divisor` (at least `divisor`), never losing >10%.

    pytorchvideo sizes the SE bottleneck this way; we need the same rounding to get the same shapes.
    """
    rounded = max(divisor, int(width + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * width:
        rounded += divisor
    return rounded


class X3DStem(nn.Module):
    """Spatial 1x3x3 conv (stride 2) then depthwise temporal 5x1x1 conv, BN, ReLU."""

    def __init__(self, out_channels: int, temporal_kernel: int = 5):
        super().__init__()
        # Note: the confusing names are pytorchvideo's, kept so its checkpoints load. Its stem is a
        # `Conv2plus1d(conv_t=<spatial conv>, conv_xy=<temporal conv>)`: the key `conv.conv_t`
        # holds the *spatial* 1x3x3 conv and `conv.conv_xy` the *temporal* 5x1x1 conv, applied in
        # that order. `conv` is a bare container here: it only gives the two convs their names.
        self.conv = nn.Module()
        self.conv.conv_t = nn.Conv3d(3, out_channels, kernel_size=(1, 3, 3), stride=(1, 2, 2),
                                     padding=(0, 1, 1), bias=False)
        self.conv.conv_xy = nn.Conv3d(out_channels, out_channels,
                                      kernel_size=(temporal_kernel, 1, 1),
                                      padding=(temporal_kernel // 2, 0, 0), groups=out_channels,
                                      bias=False)
        self.norm = nn.BatchNorm3d(out_channels)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x):  # (B, 3, T, H, W) -> (B, C, T, H/2, W/2)
        return self.activation(self.norm(self.conv.conv_xy(self.conv.conv_t(x))))


class SqueezeExcitation(nn.Module):
    """Channel gates from the clip-wide mean (Hu et al.); `block` is the key fvcore's SE uses."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.block = nn.Sequential(nn.Conv3d(channels, reduced, 1), nn.ReLU(inplace=True),
                                   nn.Conv3d(reduced, channels, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.block(x.mean(dim=(2, 3, 4), keepdim=True))  # (B, C, 1, 1, 1) gates


class X3DBottleneck(nn.Module):
    """1x1x1 expand -> depthwise 3x3x3 (carries the stride) [+ SE] -> Swish -> 1x1x1 project."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, stride: tuple, se_ratio: float):
        super().__init__()
        self.conv_a = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.norm_a = nn.BatchNorm3d(dim_inner)
        self.act_a = nn.ReLU(inplace=True)
        self.conv_b = nn.Conv3d(dim_inner, dim_inner, 3, stride=stride, padding=1, groups=dim_inner,
                                bias=False)
        # pytorchvideo keeps BN and SE together in a Sequential named norm_b (keys norm_b.0, .1).
        se = nn.Identity()
        if se_ratio > 0:
            se = SqueezeExcitation(dim_inner, _round_width(dim_inner * se_ratio))
        self.norm_b = nn.Sequential(nn.BatchNorm3d(dim_inner), se)
        self.act_b = nn.SiLU()  # Swish, x * sigmoid(x), as in the X3D paper
        self.conv_c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.norm_c = nn.BatchNorm3d(dim_out)

    def forward(self, x):
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class X3DResBlock(nn.Module):
    """relu(shortcut(x) + bottleneck(x)); the shortcut is a 1x1x1 conv when the shape changes."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, stride: tuple, se_ratio: float):
        super().__init__()
        # Quirk kept for checkpoint compatibility: pytorchvideo adds the shortcut conv when the
        # width or the resolution changes, but its BN only when the width changes (the first block
        # of res2 keeps 24 channels, so it has `branch1_conv` and no `branch1_norm`).
        self.branch1_conv = None
        self.branch1_norm = None
        if dim_in != dim_out or math.prod(stride) > 1:
            self.branch1_conv = nn.Conv3d(dim_in, dim_out, 1, stride=stride, bias=False)
        if dim_in != dim_out:
            self.branch1_norm = nn.BatchNorm3d(dim_out)
        self.branch2 = X3DBottleneck(dim_in, dim_inner, dim_out, stride, se_ratio)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x):
        shortcut = x
        if self.branch1_conv is not None:
            shortcut = self.branch1_conv(x)
        if self.branch1_norm is not None:
            shortcut = self.branch1_norm(shortcut)
        return self.activation(shortcut + self.branch2(x))


class X3DStage(nn.Module):
    """`depth` residual blocks; the first carries the spatial stride; SE on every other block."""

    def __init__(self, depth: int, dim_in: int, dim_inner: int, dim_out: int, spatial_stride: int,
                 se_ratio: float):
        super().__init__()
        self.res_blocks = nn.ModuleList(
            X3DResBlock(dim_in if i == 0 else dim_out, dim_inner, dim_out,
                        stride=(1, spatial_stride, spatial_stride) if i == 0 else (1, 1, 1),
                        # X3D paper: SE after the 3x3x3 conv of every other block (1st, 3rd, ...).
                        se_ratio=se_ratio if i % 2 == 0 else 0.0)
            for i in range(depth))

    def forward(self, x):
        for block in self.res_blocks:
            x = block(x)
        return x


class ProjectedPool(nn.Module):
    """1x1x1 conv, BN, ReLU, global average pool, 1x1x1 conv, ReLU: the pooled clip embedding."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int):
        super().__init__()
        self.pre_conv = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.pre_norm = nn.BatchNorm3d(dim_inner)
        self.pre_act = nn.ReLU(inplace=True)
        self.post_conv = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.post_act = nn.ReLU(inplace=True)

    def forward(self, x):  # (B, C, T, H, W) -> (B, dim_out, 1, 1, 1)
        x = self.pre_act(self.pre_norm(self.pre_conv(x)))
        # Deviation (see the reading guide): a global average where pytorchvideo uses an AvgPool3d
        # whose kernel is computed from the training crop, so any input size works here.
        x = F.adaptive_avg_pool3d(x, 1)
        return self.post_act(self.post_conv(x))


class X3DHead(nn.Module):
    """Projected pooling, dropout, linear classifier."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, num_classes: int, dropout: float):
        super().__init__()
        # pytorchvideo names the whole conv-pool-conv unit `pool` (keys blocks.5.pool.pre_conv...).
        self.pool = ProjectedPool(dim_in, dim_inner, dim_out)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(dim_out, num_classes)

    def forward(self, x):  # (B, C, T, H, W) -> (B, num_classes)
        x = self.pool(x).flatten(1)  # (B, dim_out, 1, 1, 1) -> (B, dim_out), the "embed" tap
        return self.proj(self.dropout(x))


class X3D(nn.Module):
    """X3D as a plain module that returns logits; `blocks` = [stem, res2, res3, res4, res5, head].

    Defaults are X3D-S/M (pytorchvideo's width_factor 2.0, depth_factor 2.2, bottleneck 2.25).
    """

    def __init__(self, num_classes: int = 400, stem_width: int = 24,
                 stage_widths: tuple = (24, 48, 96, 192), stage_depths: tuple = (3, 5, 11, 7),
                 stage_spatial_strides: tuple = (2, 2, 2, 2), expansion: float = 2.25,
                 head_width: int = 2048, se_ratio: float = 0.0625, dropout: float = 0.5):
        super().__init__()
        blocks = [X3DStem(stem_width)]
        dim_in = stem_width
        for width, depth, stride in zip(stage_widths, stage_depths, stage_spatial_strides):
            # X3D's "inverted bottleneck": the depthwise conv runs at 2.25x the stage width.
            dim_inner = int(expansion * width)
            blocks.append(X3DStage(depth, dim_in, dim_inner, width, stride, se_ratio))
            dim_in = width
        # pytorchvideo feeds the head the last stage's inner width (432 for X3D-S) before 2048.
        blocks.append(X3DHead(dim_in, dim_inner, head_width, num_classes, dropout))
        self.blocks = nn.ModuleList(blocks)
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        # Each residual branch starts at zero (its last BN's scale = 0), so every block begins as
        # the identity; this is what pytorchvideo does too and it helps training from scratch.
        for m in self.modules():
            if isinstance(m, X3DBottleneck):
                nn.init.zeros_(m.norm_c.weight)

    def forward(self, x):  # (B, 3, T, H, W) -> (B, num_classes)
        if x.device.type == "cpu":
            # Note: oneDNN runs depthwise 3D convs about 2x faster (forward + backward) on
            # channels-last tensors; the layout changes no value. Measured on 2 cores, batch 16 at
            # 8x32x32: x3d_s_tiny train step 0.058 -> 0.033 s. Left alone on GPUs (not measured).
            x = x.contiguous(memory_format=torch.channels_last_3d)
        for block in self.blocks:
            x = block(x)
        return x


# ---------------------------------------------------------------------------------------------
# 3. Model configurations, including the tiny CPU variants
# ---------------------------------------------------------------------------------------------
# Full-size X3D (pytorchvideo's width_factor 2.0 on a base width of 12, bottleneck factor 2.25):
# stage depths are ceil(depth_factor * (1, 2, 5, 3)), so depth_factor 2.2 gives (3, 5, 11, 7) for
# XS, S and M (one network, three inputs: 3,794,274 parameters with 400 classes) and 5.0 gives
# (5, 10, 25, 15) for L.
#
# Tiny variants (ours) for the `tiny` preset on a CPU. Sized by measurement on 2 CPU cores (one
# train step = forward + backward + SGD step, batch 16, 8x32x32; 9 classes); the student is fed
# 6x24 (`_INPUT_SPECS`), where its GMACs and map are those in brackets:
#   name         params   GMACs/view        train step   last-stage map           embed
#   x3d_s_tiny    73 K     0.0069 [0.0029]   ~0.035 s     64 x 8x4x4 [64 x 6x3x3]   128  (student)
#   x3d_m_tiny   378 K     0.038             ~0.08 s     128 x 8x4x4               256  (CNN teacher)
#   mvit_tiny    358 K     0.034             ~0.045 s     96 x 4x4x4                 96  (ViT teacher)
# Both teachers have ~5x the student's parameters (and, on its smaller input, ~12x its
# multiply-adds), like the paper's ordering. The two X3D stages at 4x4 keep stride 1 (spatial
# strides 2, 2, 1, 1), so that the "map" the SDD branch works on is 4x4 rather than the 1x1 that
# X3D's stride 32 would leave of a 32 px frame.
_X3D_CONFIGS = {
    "x3d_xs": dict(),
    "x3d_s": dict(),
    "x3d_m": dict(),
    "x3d_l": dict(stage_depths=(5, 10, 25, 15)),
    "x3d_m_tiny": dict(stem_width=16, stage_widths=(16, 32, 64, 128), stage_depths=(1, 2, 3, 2),
                       stage_spatial_strides=(2, 2, 1, 1), head_width=256, dropout=0.2),
    "x3d_s_tiny": dict(stem_width=8, stage_widths=(8, 16, 32, 64), stage_depths=(1, 1, 2, 1),
                       stage_spatial_strides=(2, 2, 1, 1), head_width=128, dropout=0.2),
}


class MeanPoolMViT(MViT):
    """torchvision's MViT whose classifier reads the mean of the patch tokens, not the class token.

    The reference MViT implementations offer both poolings (pySlowFast `MVIT.USE_MEAN_POOLING`,
    pytorchvideo `SequencePool("mean")`); MViTv2-S uses the class token. The class token is still
    prepended (torchvision's positional encoding adds it) and attends like any token; it is only
    not read. Same modules and state-dict keys as `MViT`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x).flatten(2).transpose(1, 2)  # (B, C, T', H', W') -> (B, T'H'W', C)
        x = self.pos_encoding(x)  # (B, 1 + T'H'W', C): class token prepended, positions added
        thw = (self.pos_encoding.temporal_size,) + self.pos_encoding.spatial_size
        for block in self.blocks:
            x, thw = block(x, thw)
        x = self.norm(x)
        return self.head(x[:, 1:].mean(dim=1))  # mean over the patch tokens -> (B, C) -> logits


def _mvit_tiny(num_classes: int) -> MeanPoolMViT:
    """A 3-block MViTv2 (torchvision's MViT class, MViTv2-S's flags) for 8x32x32 clips.

    Patches of 2x4x4 give 4x8x8 = 256 tokens; the first block pools queries and keys/values with
    MViT's depthwise 3x3x3 pooling convs (stride 1x2x2) down to 4x4x4 = 64 tokens, then two plain
    blocks at width 96 follow. No head dropout, no stochastic depth. The classifier reads the mean
    of the patch tokens (`MeanPoolMViT`).
    Note: why mean pooling. With MViTv2-S's class token this model learned from scratch only after
    sitting near chance for 10-20 epochs, and in some seeds never did; with mean pooling it learns
    from about epoch 6 and ended higher (exploratory teacher-only runs on the held-out 20% of the
    training videos, seed 0, 30 epochs: 54.5% vs 40.2% clip accuracy; RESULTS.md). Without label-preserving spatial augmentation every
    tiny MViT we tried memorized the training clips. The pooling block helped most: it is MViT's
    own convolutional inductive bias. ViTs are data hungry.
    """
    pool = dict(kernel_q=[3, 3, 3], kernel_kv=[3, 3, 3], stride_q=[1, 2, 2], stride_kv=[1, 2, 2])
    plain = dict(kernel_q=[1, 1, 1], kernel_kv=[1, 1, 1], stride_q=[1, 1, 1], stride_kv=[1, 1, 1])
    width, heads = 96, 2
    blocks = [MSBlockConfig(num_heads=heads, input_channels=width, output_channels=width, **cfg)
              for cfg in (pool, plain, plain)]
    return MeanPoolMViT(spatial_size=(32, 32), temporal_size=8, block_setting=blocks,
                        # the MViTv2 flavour, as torchvision's mvit_v2_s builds it
                        residual_pool=True, residual_with_cls_embed=False, rel_pos_embed=True,
                        proj_after_attn=True,
                        dropout=0.0, stochastic_depth_prob=0.0, num_classes=num_classes,
                        patch_embed_kernel=(3, 4, 4), patch_embed_stride=(2, 4, 4),
                        patch_embed_padding=(1, 0, 0))


_TORCHVISION_MODELS = ("mvit_v2_s", "swin3d_t", "r3d_18", "mc3_18", "r2plus1d_18", "s3d")

# pytorchvideo's Kinetics-400 X3D checkpoints (its model zoo); the weights are under "model_state".
_X3D_URLS = {
    "x3d_xs": "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/X3D_XS.pyth",
    "x3d_s": "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/X3D_S.pyth",
    "x3d_m": "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/X3D_M.pyth",
    "x3d_l": "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/X3D_L.pyth",
}


# ---------------------------------------------------------------------------------------------
# 4. build_model and pretrained weights
# ---------------------------------------------------------------------------------------------
def build_model(name: str, num_classes: int, pretrained: Union[bool, str] = False) -> nn.Module:
    """A plain module mapping (B, 3, T, H, W) to logits (B, num_classes); input: `input_spec(name)`.

    pretrained: False (random init); True (download the published Kinetics-400 weights:
    torchvision's for its models, pytorchvideo's for X3D); or a path to a local checkpoint (a state
    dict, or a dict holding one under "model_state", "state_dict" or "model"). The classifier is
    replaced for `num_classes`: its checkpoint tensors of another shape are dropped (and reported)
    and it keeps its fresh initialization; every other tensor must match, so a checkpoint of
    another model fails.
    """
    if name in _X3D_CONFIGS:
        model = X3D(num_classes=num_classes, **_X3D_CONFIGS[name])
    elif name in _TORCHVISION_MODELS:
        # torchvision's default init; `num_classes` sizes its classifier (fc / head / classifier)
        model = getattr(tv_video, name)(weights=None, num_classes=num_classes)
    elif name == "mvit_tiny":
        model = _mvit_tiny(num_classes)
    else:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")

    if pretrained is True:
        state = _download_state_dict(name)
        _load_with_new_head(model, state, name, where=_pretrained_url(name))
    elif pretrained:  # a path to a local file
        path = str(pretrained)
        ckpt = _torch_load_safely(
            lambda: torch.load(path, map_location="cpu", weights_only=True), path)
        _load_with_new_head(model, _state_dict_of(ckpt, path), name, where=path)
    return model


def _pretrained_url(name: str) -> str:
    if name in _X3D_URLS:
        return _X3D_URLS[name]
    if name in _TORCHVISION_MODELS:
        return torchvision.models.get_model_weights(name).DEFAULT.url
    raise ValueError(f"{name!r} has no published weights (the tiny variants are ours): train "
                     f"it with train.py, or pass a checkpoint's path: pretrained='path/to/file.pt'")


def _download_state_dict(name: str) -> dict:
    """Download (or read from torch.hub's cache) the published weights, or say what to do."""
    url = _pretrained_url(name)
    try:
        # torchvision's file names carry a hash prefix for torch.hub to verify; pytorchvideo's don't
        ckpt = _torch_load_safely(
            lambda: torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True,
                                                       check_hash=name in _TORCHVISION_MODELS,
                                                       weights_only=True), url)
    except OSError as e:  # no network, DNS failure, HTTP error, timeout (URLError is an OSError)
        file_name = url.rsplit("/", 1)[-1]
        raise RuntimeError(
            f"could not download the Kinetics-400 weights of {name!r} from {url} "
            f"({type(e).__name__}: {e}). This machine may have no internet access. Download that "
            f"file on one that has, then pass its path: build_model({name!r}, num_classes, "
            f"pretrained='path/to/{file_name}'), or copy it into "
            f"{torch.hub.get_dir()}/checkpoints/ so that pretrained=True finds it offline.") from e
    return _state_dict_of(ckpt, url)


def _torch_load_safely(load, where: str):
    """Run a torch.load-like call (weights_only=True) and explain a refusal to unpickle objects."""
    try:
        return load()
    except pickle.UnpicklingError as e:
        raise RuntimeError(
            f"{where}: torch.load(weights_only=True) refused this checkpoint because it holds "
            f"Python objects besides tensors ({e}), and unpickling those can run arbitrary code. "
            f"If you trust the file, save just its weights once: python -c \"import torch; "
            f"c = torch.load('FILE', weights_only=False); "
            f"torch.save(c.get('model_state', c), 'weights.pt')\" and pass "
            f"pretrained='weights.pt'.") from e


def _state_dict_of(ckpt, where: str) -> dict:
    """The state dict inside a checkpoint: plain, or under "model_state" (pytorchvideo,
    PySlowFast), "state_dict" or "model"; a "module." prefix left by DistributedDataParallel is
    removed."""
    if isinstance(ckpt, dict):
        for key in ("model_state", "state_dict", "model"):
            if isinstance(ckpt.get(key), dict):
                ckpt = ckpt[key]
                break
    if not isinstance(ckpt, dict) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        found = list(ckpt)[:5] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{where}: expected a state dict (names -> tensors), or a dict holding "
                         f"one under 'model_state', 'state_dict' or 'model'; found {found}")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in ckpt.items()}


def _load_with_new_head(model: nn.Module, state: dict, name: str, where: str) -> None:
    """Load `state` into `model`, dropping the classifier's tensors whose shape differs."""
    own = model.state_dict()
    head = _tap_points(model).classifier + "."
    mismatched = [k for k in state if k in own and state[k].shape != own[k].shape]
    not_head = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                for k in mismatched if not k.startswith(head)]
    if not_head:
        raise ValueError(f"{where} does not fit {name!r}: shapes differ outside the classifier "
                         f"({'; '.join(not_head[:3])}). Is it a checkpoint of another model?")
    dropped = {k: state.pop(k) for k in mismatched}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k not in dropped]
    if missing or result.unexpected_keys:
        raise ValueError(f"{where} does not fit {name!r}: missing {missing[:5]}, unexpected "
                         f"{result.unexpected_keys[:5]}. Is it a checkpoint of another model?")
    msg = f"[models] {name}: loaded {len(state)} tensors from {where}"
    if dropped:
        # Expected when fine-tuning (e.g. 400 Kinetics classes -> 51 HMDB51 classes): the new
        # classifier keeps its fresh initialization.
        shapes = ", ".join(f"{k} {tuple(v.shape)} -> {tuple(own[k].shape)}"
                           for k, v in dropped.items())
        msg += f"; new classifier, dropped {shapes}"
    print(msg)


# ---------------------------------------------------------------------------------------------
# 5. Feature taps: logits plus {"map", "embed"} without touching the plain module
# ---------------------------------------------------------------------------------------------
class TapPoints(NamedTuple):
    """Module names (as in `model.named_modules()`) where each family's features are read."""

    map: str  # output: the last stage's feature map (tokens for MViT, channels-last for Swin)
    embed: str  # output: the pooled embedding the classifier reads
    classifier: str  # the final linear layer, replaced for a new number of classes


def _tap_points(model: nn.Module) -> TapPoints:
    if isinstance(model, X3D):
        return TapPoints(map="blocks.4", embed="blocks.5.pool", classifier="blocks.5.proj")
    if isinstance(model, VideoResNet):  # r3d_18, mc3_18, r2plus1d_18
        return TapPoints(map="layer4", embed="avgpool", classifier="fc")
    if isinstance(model, MViT):  # normalized tokens: the patch tokens = map; class token (or
        # their mean, MeanPoolMViT) = embed
        return TapPoints(map="norm", embed="norm", classifier="head.1")
    if isinstance(model, SwinTransformer3d):
        return TapPoints(map="norm", embed="avgpool", classifier="head")
    if isinstance(model, S3D):
        return TapPoints(map="features", embed="avgpool", classifier="classifier.1")
    raise TypeError(f"no feature taps known for {type(model).__name__}; "
                    f"expected a model from build_model")


class FeatureTap(nn.Module):
    """Wraps a plain model: forward(x) -> (logits, {"map": (B, C, T', H', W'), "embed": (B, D)}).

    The hooks exist only while `FeatureTap.forward` runs, so `tap.model` stays the plain module:
    same state_dict keys (`tap.model.state_dict()`), same behaviour when called directly. Gradients
    flow through both features. After a forward, `map_channels` and `embed_dim` hold C and D;
    `feature_dims(model, spec)` gives them (and the map's grid) without running a real forward.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.points = _tap_points(model)
        self.map_channels: Optional[int] = None
        self.embed_dim: Optional[int] = None

    def forward(self, x):
        grabbed = {}

        def keep(key, transform=lambda output: output):
            def hook(module, inputs, output):
                grabbed[key] = transform(output)
            return hook

        hooks = [(self.points.map, keep("map"))]
        if isinstance(self.model, MeanPoolMViT):  # the mean of the patch tokens, a new tensor
            hooks.append((self.points.embed, keep("embed", lambda tokens: tokens[:, 1:].mean(dim=1))))
        elif isinstance(self.model, MViT):
            # Clone the class token now: the head's in-place dropout would rewrite it afterwards.
            hooks.append((self.points.embed, keep("embed", lambda tokens: tokens[:, 0].clone())))
        if isinstance(self.model, MViT):
            # MViT's blocks return (tokens, (T', H', W')): the last block tells the token grid.
            hooks.append((f"blocks.{len(self.model.blocks) - 1}", keep("grid", lambda out: out[1])))
        else:
            hooks.append((self.points.embed, keep("embed")))
        handles = [self.model.get_submodule(name).register_forward_hook(hook)
                   for name, hook in hooks]
        try:
            logits = self.model(x)
        finally:
            for handle in handles:  # leave the plain module exactly as we found it
                handle.remove()

        if isinstance(self.model, MViT):
            tokens, (Tp, Hp, Wp) = grabbed["map"], grabbed["grid"]
            B, N, C = tokens.shape  # N = 1 class token + T'H'W' patch tokens
            # (B, N-1, C) -> (B, C, N-1) -> (B, C, T', H', W'); tokens are ordered t, then h, then w
            fmap = tokens[:, 1:].transpose(1, 2).reshape(B, C, Tp, Hp, Wp)
            embed = grabbed["embed"]  # (B, C) class token
        elif isinstance(self.model, SwinTransformer3d):
            fmap = grabbed["map"].permute(0, 4, 1, 2, 3)  # (B, T', H', W', C) -> (B, C, T', H', W')
            embed = grabbed["embed"].flatten(1)  # (B, C, 1, 1, 1) -> (B, C)
        elif isinstance(self.model, S3D):
            fmap = grabbed["map"]
            # S3D pools with a fixed 2x7x7 window and averages the classifier's outputs afterwards;
            # averaging the pooled features first gives the vector the (linear) classifier sees.
            embed = grabbed["embed"].mean(dim=(2, 3, 4))  # (B, C, t, h, w) -> (B, C)
        else:  # X3D, VideoResNet
            fmap = grabbed["map"]
            embed = grabbed["embed"].flatten(1)  # (B, D, 1, 1, 1) -> (B, D)
        # contiguous: X3D computes channels-last on CPU; callers may .view() the map
        fmap = fmap.contiguous()
        self.map_channels, self.embed_dim = fmap.shape[1], embed.shape[1]
        return logits, {"map": fmap, "embed": embed}


def feature_dims(model: nn.Module, spec: InputSpec) -> dict:
    """Widths of the features of `model` at its input `spec`: {"map": C, "embed": D,
    "grid": (T', H', W')}, the map being (B, C, T', H', W') and the embedding (B, D).

    Runs the forward on a meta-device copy: shapes only, no compute, the model itself untouched.
    """
    meta = copy.deepcopy(model).to("meta").eval()
    x = torch.empty(1, 3, spec.frames, spec.size, spec.size, device="meta")
    with torch.no_grad():
        _, feats = FeatureTap(meta)(x)
    C, *grid = feats["map"].shape[1:]
    return {"map": C, "embed": feats["embed"].shape[1], "grid": tuple(grid)}


# ---------------------------------------------------------------------------------------------
# 6. Presets (DESIGN.md section 8)
# ---------------------------------------------------------------------------------------------
# "clip" is what the data loader must deliver (uint8, num_frames frames taken every frame_stride
# frames, size x size); each model's adapter derives its own input from it.
PRESETS = {
    # CPU default: the real architecture classes at toy sizes; every model takes the whole clip.
    "tiny": dict(vit_teacher="mvit_tiny", cnn_teacher="x3d_m_tiny", student="x3d_s_tiny",
                 clip=dict(num_frames=8, frame_stride=2, size=32)),
    # The paper's models at their native inputs: MViTv2-S 16x224, X3D-M 16x224, X3D-S 13x160
    # (the adapter picks 13 of the 16 frames and resizes 224 -> 160). Stride 4 = MViTv2-S's 16x4.
    "paper": dict(vit_teacher="mvit_v2_s", cnn_teacher="x3d_m", student="x3d_s",
                  clip=dict(num_frames=16, frame_stride=4, size=224)),
    # Every model's Kinetics-400 weights from torchvision (the 3D ResNets resize 224 -> 112).
    "torchvision": dict(vit_teacher="mvit_v2_s", cnn_teacher="r2plus1d_18", student="mc3_18",
                        clip=dict(num_frames=16, frame_stride=4, size=224)),
}


# ---------------------------------------------------------------------------------------------
# 7. Cost: parameters, multiply-accumulates, CPU latency
# ---------------------------------------------------------------------------------------------
def count_params(module: nn.Module) -> int:
    """Number of parameters (buffers such as BatchNorm statistics not included)."""
    return sum(p.numel() for p in module.parameters())


def count_gmacs(module: nn.Module, input_shape) -> float:
    """Giga multiply-accumulates per view for an input of shape (3, T, H, W) or (B, 3, T, H, W).

    Counted by torch.utils.flop_counter.FlopCounterMode, which sees every matmul and convolution,
    attention included, and counts 2 FLOPs per multiply-accumulate; published video tables
    (torchvision, pytorchvideo, the paper) count multiply-accumulates and call them "FLOPs",
    hence the / 2.
    Element-wise work (norms, activations, pooling) is not counted, as in those tables.
    The forward runs on the meta device (shapes only), so even MViTv2-S at 16x224x224 takes < 1 s.
    """
    shape = tuple(input_shape)
    if len(shape) == 4:
        shape = (1,) + shape

    def flops_on(device):  # on a copy: the caller's module keeps its device, mode and weights
        model, x = copy.deepcopy(module).to(device).eval(), torch.zeros(shape, device=device)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
        return counter.get_total_flops()

    try:
        flops = flops_on("meta")
    except (NotImplementedError, RuntimeError):  # an op without a meta kernel: count on the CPU
        flops = flops_on("cpu")
    return flops / 2 / shape[0] / 1e9


def cpu_latency_ms(module: nn.Module, input_shape, warmup: int = 3, repeats: int = 10,
                   num_threads: Optional[int] = None) -> float:
    """Median CPU inference latency per clip in milliseconds (eval mode, inference_mode, on a copy).

    input_shape is (3, T, H, W) or (B, 3, T, H, W); with B > 1 the batch time is divided by B.
    num_threads: torch threads for the measurement (None = current setting), restored afterwards.
    """
    shape = tuple(input_shape)
    if len(shape) == 4:
        shape = (1,) + shape
    model = copy.deepcopy(module).cpu().eval()  # a copy: the caller's device and mode stay as is
    x = torch.randn(shape)
    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        times = []
        with torch.inference_mode():
            for i in range(warmup + repeats):
                t0 = time.perf_counter()
                model(x)
                if i >= warmup:  # the first runs pay for allocation and kernel selection
                    times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(previous_threads)
    return statistics.median(times) * 1000.0 / shape[0]


# ---------------------------------------------------------------------------------------------
# Demo: python models.py
# ---------------------------------------------------------------------------------------------
def _preset_table(preset: str, num_classes: int = 400) -> str:
    """Params, GMACs per view, input and feature shapes of a preset's three models."""
    rows, cost = [], {}
    for role in ("vit_teacher", "cnn_teacher", "student"):
        name = PRESETS[preset][role]
        spec = input_spec(name)
        with torch.device("meta"):  # no weights allocated: the full-size models cost nothing here
            model = build_model(name, num_classes)
        params = count_params(model)
        gmacs = count_gmacs(model, (3, spec.frames, spec.size, spec.size))
        dims = feature_dims(model, spec)
        cost[role] = (params, gmacs)
        map_shape = "x".join(map(str, (dims["map"], *dims["grid"])))  # C x T' x H' x W'
        clip_in = f"{spec.frames}x{spec.size}x{spec.size}"
        rows.append(f"  {role:<12} {name:<12} {params / 1e6:>9.3f}M {gmacs:>10.4f}  {clip_in:<11} "
                    f"map {map_shape:<14} embed {dims['embed']}")
    (p_s, g_s), (p_v, g_v) = cost["student"], cost["vit_teacher"]
    clip = PRESETS[preset]["clip"]
    header = (f"preset {preset!r}: data loader clip {clip['num_frames']} frames (stride "
              f"{clip['frame_stride']}) at {clip['size']}x{clip['size']}; {num_classes} classes\n"
              f"  {'role':<12} {'model':<12} {'params':>10} {'GMACs/view':>10}  {'input':<11} "
              f"features")
    footer = (f"  student vs ViT teacher: {100 * (1 - p_s / p_v):.1f}% fewer parameters, "
              f"{100 * (1 - g_s / g_v):.1f}% fewer multiply-accumulates per view")
    return "\n".join([header, *rows, footer])


if __name__ == "__main__":
    # Kinetics-400 heads for the full-size presets (the published tables count them); for `tiny`,
    # the 9 classes of the synthetic dataset that data.make_synthetic_hmdb51 writes by default.
    for preset in PRESETS:
        print(_preset_table(preset, num_classes=9 if preset == "tiny" else 400) + "\n")
    print("Paper: X3D-S vs MViTv2-S, 3.79M vs 34.54M parameters (~89% fewer), "
          "1.96 vs 64.22 GMACs (~96% fewer).")
