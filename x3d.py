"""X3D (Feichtenhofer, CVPR 2020) as one plain module, with pytorchvideo's module names.

Reading guide
-------------
Paper (arXiv 2511.09469): the CNN teacher is X3D-M and the student X3D-S. Both are the *same*
network (same weight shapes, 3,794,274 parameters with 400 classes) fed different clips: X3D-S
13x160x160, X3D-M 16x224x224 (X3D-XS 4x160; X3D-L is deeper). models.py picks the sizes and
inputs; this file is the network alone and imports nothing of the project, so it can be lifted
into another one.

Layout (attribute names are the state_dict keys of pytorchvideo's `create_x3d`, so its published
Kinetics-400 checkpoints load unchanged; tests/test_x3d.py proves it against pytorchvideo 0.1.5):
    blocks[0]     stem: spatial 1x3x3 conv (stride 2), depthwise temporal 5x1x1 conv, BN, ReLU
    blocks[1..4]  stages res2..res5: residual bottlenecks 1x1x1 -> depthwise 3x3x3 (+SE) -> 1x1x1
    blocks[5]     head: 1x1x1 conv, BN, ReLU, global average pool, 1x1x1 conv, ReLU, dropout, linear
Shapes: clips are (B, 3, L, H, W) with L frames; the last stage's map is (B, C, L, H/32, W/32) at
the default strides; the head returns logits (B, num_classes).

Our deviations (each also marked where it happens):
  - Note: the head pools with a global average instead of pytorchvideo's `AvgPool3d`, whose kernel
    is baked from the training crop. At the native input that kernel covers the whole map, so
    both are the same function (the test checks equal logits); at other sizes ours still gives
    one prediction per clip, where pytorchvideo's would average sliding windows after a ReLU.
  - Note: on CPU the network computes in channels-last layout (oneDNN runs depthwise 3D convs
    faster that way; same values), see `X3D.forward`.
  - pytorchvideo's head ends with a softmax by default; ours returns logits.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


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

    def forward(self, x):  # (B, 3, L, H, W) -> (B, C, L, H/2, W/2)
        return self.activation(self.norm(self.conv.conv_xy(self.conv.conv_t(x))))


class X3DSqueezeExcitation(nn.Module):
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
            se = X3DSqueezeExcitation(dim_inner, _round_width(dim_inner * se_ratio))
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

    def forward(self, x):  # (B, C, L, H, W) -> (B, dim_out, 1, 1, 1)
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

    def forward(self, x):  # (B, C, L, H, W) -> (B, num_classes)
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

    def forward(self, x):  # (B, 3, L, H, W) -> (B, num_classes)
        if x.device.type == "cpu":
            # Note: oneDNN runs depthwise 3D convs about 2x faster (forward + backward) on
            # channels-last tensors; the layout changes no value (RESULTS.md, "Timings
            # behind the code's comments"). Left alone on GPUs, where it was not measured.
            x = x.contiguous(memory_format=torch.channels_last_3d)
        for block in self.blocks:
            x = block(x)
        return x


