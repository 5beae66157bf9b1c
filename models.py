"""Model names -> plain modules: input specs and the adapter, model sizes, presets, cost.

Reading guide
-------------
Paper (arXiv 2511.09469, its architectures and efficiency sections): a heterogeneous ViT teacher
(MViTv2-S) and a structurally similar CNN teacher (X3D-M) distil into a lightweight CNN student
(X3D-S). The efficiency claim is X3D-S against MViTv2-S: ~89% fewer parameters (3.79M vs 34.54M)
and ~96% fewer multiply-accumulates per view (1.96 vs 64.22 GMACs). `python models.py` prints
these figures for every preset.

What is in this file, top to bottom:
  1. Input specs and the adapter: every model declares its native input (`input_spec(name)`);
     `adapt_input(clip, spec)` turns the data loader's uint8 clip into that input (frames picked by
     uniform index selection, resized only when the size differs, normalized).
  2. Model sizes: the X3D sizes (the network itself is x3d.py), torchvision's video models, and
     the tiny CPU variants (`x3d_s_tiny` student, `x3d_m_tiny` CNN teacher, `mvit_tiny` ViT
     teacher): the same classes at toy sizes.
  3. `build_model(name, num_classes, pretrained=False)`: plain modules that return logits;
     pretrained = True (published Kinetics-400 weights) or a local checkpoint path, loaded by
     checkpoints.py with the classifier replaced for `num_classes`. `freeze_below_top` keeps
     all but a pretrained model's last stage and classifier fixed (train.py --vit-teacher-finetune top).
  4. `PRESETS`: which ViT teacher, CNN teacher and student each preset uses, and the clip the data
     loader must deliver (`tiny`, `paper`, `torchvision`).
  5. Cost: `count_params`, `count_gmacs` (multiply-accumulates per view, attention included).
The features the losses read ({"map", "embed"}) are tapped by features.py, outside the models.

Our interpretations and deviations (the paper does not specify these):
  - Note: X3D-S is fed 13x160x160 (its training crop and the input of the published 1.96 GMACs);
    pytorchvideo's own evaluation recipe uses a 182 px short side. Both work here.
  - Note: the tiny variants are ours, sized so that the whole default CPU run takes minutes (the
    comment above `_X3D_CONFIGS` gives their shapes; RESULTS.md, "Timings behind the code's
    comments", their measured step times).
    From scratch the tiny ViT teacher needs spatial augmentation, mean pooling of its tokens and
    more epochs than the CNNs (see `_mvit_tiny`).
Deliberately left out: multi-GPU wrappers, torch.compile, mixed precision (train.py's business);
video models other than the X3D sizes and the six torchvision ones named in `_INPUT_SPECS`.
"""
import copy
from typing import NamedTuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.models.video as tv_video
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.video.mvit import MSBlockConfig, MViT

from checkpoints import load_pretrained
from features import feature_dims
from x3d import X3D


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
    """uint8 clips (B, 3, L, H, W) -> normalized float (B, 3, spec.frames, spec.size, spec.size).

    One decoded clip feeds all three models; this turns it into each model's native input. Frames are chosen by uniform index selection (16 -> 13 keeps frames
    0, 1, 2, 4, 5, ...; fewer frames than asked repeat some), which keeps the clip's time span.
    The data loader delivers square crops; a non-square clip would be stretched to a square.
    """
    if clip.dtype != torch.uint8 or clip.dim() != 5 or clip.shape[1] != 3:
        raise TypeError(
            f"adapt_input expects a uint8 batch (B, 3, L, H, W) as the data loader yields it; "
            f"got {clip.dtype} {tuple(clip.shape)}"
        )
    B, C, L, H, W = clip.shape
    if L != spec.frames:
        # Select on uint8 before converting: 4x less memory traffic than selecting floats.
        idx = torch.linspace(0, L - 1, spec.frames, device=clip.device).round().long()
        clip = clip.index_select(2, idx)  # (B, 3, L, H, W) -> (B, 3, frames, H, W)
    x = clip.float()  # the only uint8 -> float conversion
    if (H, W) != (spec.size, spec.size):
        # Resize frame by frame; antialias so that shrinking 224 -> 160 does not alias.
        Ln = x.shape[2]
        x = x.transpose(1, 2).reshape(B * Ln, C, H, W)  # (B, 3, L, H, W) -> (B*L, 3, H, W)
        x = F.interpolate(x, size=(spec.size, spec.size), mode="bilinear", align_corners=False,
                          antialias=True)
        x = x.reshape(B, Ln, C, spec.size, spec.size).transpose(1, 2)  # -> (B, 3, L, S, S)
        x = x.contiguous()
    # (x / 255 - mean) / std, folded into one subtract and one multiply done in place.
    mean = torch.tensor(spec.mean, device=x.device).view(1, 3, 1, 1, 1) * 255.0
    inv_std = 1.0 / (torch.tensor(spec.std, device=x.device).view(1, 3, 1, 1, 1) * 255.0)
    return x.sub_(mean).mul_(inv_std)


# ---------------------------------------------------------------------------------------------
# 2. Model sizes, including the tiny CPU variants
# ---------------------------------------------------------------------------------------------
# Full-size X3D (pytorchvideo's width_factor 2.0 on a base width of 12, bottleneck factor 2.25):
# stage depths are ceil(depth_factor * (1, 2, 5, 3)), so depth_factor 2.2 gives (3, 5, 11, 7) for
# XS, S and M (one network, three inputs: 3,794,274 parameters with 400 classes) and 5.0 gives
# (5, 10, 25, 15) for L.
#
# Tiny variants (ours) for the `tiny` preset on a CPU, sized by their train-step time on 2 cores
# (RESULTS.md, "Timings behind the code's comments"); 9 classes; the student is fed 6x24
# (`_INPUT_SPECS`), its map then in brackets:
#   name         params   last-stage map (C x L'xH'xW')   embed
#   x3d_s_tiny    73 K     64 x 8x4x4 [64 x 6x3x3]          128  (student)
#   x3d_m_tiny   378 K    128 x 8x4x4                       256  (CNN teacher)
#   mvit_tiny    358 K     96 x 4x4x4                        96  (ViT teacher)
# `python models.py` prints these shapes and the GMACs from the code. Both teachers have ~5x the
# student's parameters (and, on its smaller input, ~12x its multiply-adds), like the paper's
# ordering. The two X3D stages at 4x4 keep stride 1 (spatial strides 2, 2, 1, 1), so that the
# "map" the SDD branch works on is 4x4 rather than the 1x1 that X3D's stride 32 would leave of a
# 32 px frame.
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
    not read. Same modules and state-dict keys as `MViT`. `readout` tells features.py which
    token vector the classifier reads (its "embed").
    """

    readout = "mean"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x).flatten(2).transpose(1, 2)  # (B, C, L', H', W') -> (B, L'H'W', C)
        x = self.pos_encoding(x)  # (B, 1 + L'H'W', C): class token prepended, positions added
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
    Note: why mean pooling. With MViTv2-S's class token this model, trained from scratch, sat near
    chance for many epochs and in some seeds never learned; with mean pooling it learned early and
    ended higher (the runs are in RESULTS.md's history: `git log -p -S 'class token' RESULTS.md`).
    Without label-preserving spatial augmentation every tiny MViT we tried memorized the training
    clips. The pooling block helped most: it is MViT's own convolutional inductive bias. ViTs are
    data hungry.
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


# ---------------------------------------------------------------------------------------------
# 3. build_model
# ---------------------------------------------------------------------------------------------
def build_model(name: str, num_classes: int, pretrained: Union[bool, str] = False) -> nn.Module:
    """A plain module mapping (B, 3, L, H, W) to logits (B, num_classes); input: `input_spec(name)`.

    pretrained: False (random init); True (the published Kinetics-400 weights, torchvision's for
    its models, pytorchvideo's for X3D, from torch.hub's cache or downloaded into it:
    checkpoints.find_pretrained; the tiny models read the zoo); or a path to a local checkpoint
    (checkpoints.load_pretrained: the classifier is replaced for `num_classes`, every other tensor
    must match, so a checkpoint of another model fails).
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
    return load_pretrained(model, name, pretrained)


# The top of each teacher: its last stage and classifier, as parameter-name prefixes. X3D: res5 and
# the head (blocks.4, blocks.5); MViTv2-S: its last stage (blocks 14-15), the final norm and the
# head; the 3-block tiny MViT: likewise its last two blocks; the torchvision ResNets: layer4 + fc.
TOP_LAYERS = {**{name: ("blocks.4.", "blocks.5.") for name in _X3D_CONFIGS},
              "mvit_v2_s": ("blocks.14.", "blocks.15.", "norm.", "head."),
              "mvit_tiny": ("blocks.1.", "blocks.2.", "norm.", "head."),
              **{name: ("layer4.", "fc.") for name in ("r3d_18", "mc3_18", "r2plus1d_18")}}


def freeze_below_top(model: nn.Module, name: str) -> int:
    """Fine-tune only the top (`TOP_LAYERS[name]`): every other parameter gets requires_grad False
    and keeps its pretrained value -> the number of parameters left to train.

    The optimizer then holds only the top, and autograd records nothing below it: the backward
    pass stops at the first trained layer, which is what makes the step cheap. BatchNorm layers
    below still update their running statistics in train() mode: the frozen weights see the new
    data's statistics, as they would when the whole model is fine-tuned.
    """
    if name not in TOP_LAYERS:
        raise ValueError(f"no top defined for {name!r}; models with one: {', '.join(sorted(TOP_LAYERS))}")
    trained = 0
    for key, p in model.named_parameters():
        p.requires_grad_(key.startswith(TOP_LAYERS[name]))
        trained += p.numel() if p.requires_grad else 0
    if trained == 0:  # a renamed module would otherwise freeze the whole model silently
        raise ValueError(f"none of {name}'s parameters starts with {TOP_LAYERS[name]}")
    return trained


# ---------------------------------------------------------------------------------------------
# 4. Presets
# ---------------------------------------------------------------------------------------------
# "clip" is what the data loader must deliver (uint8, num_frames frames taken every frame_stride
# frames, size x size); each model's adapter derives its own input from it.
PRESETS = {
    # CPU default: the real architecture classes at toy sizes; every model takes the whole clip.
    # teacher_finetune: what each pretrained teacher fine-tunes, "all" or its "top" (`TOP_LAYERS`),
    # chosen on validation (RESULTS.md, "How the benchmark's fixed settings were chosen"): the
    # ViT only its top, a much cheaper step that ended higher than fine-tuning all of it; the CNN
    # all of it, as its top alone ended lower.
    "tiny": dict(vit_teacher="mvit_tiny", cnn_teacher="x3d_m_tiny", student="x3d_s_tiny",
                 clip=dict(num_frames=8, frame_stride=2, size=32),
                 teacher_finetune={"vit": "top", "cnn": "all"}),
    # The paper's models at their native inputs: MViTv2-S 16x224, X3D-M 16x224, X3D-S 13x160
    # (the adapter picks 13 of the 16 frames and resizes 224 -> 160). Stride 4 = MViTv2-S's 16x4.
    "paper": dict(vit_teacher="mvit_v2_s", cnn_teacher="x3d_m", student="x3d_s",
                  clip=dict(num_frames=16, frame_stride=4, size=224),
                  teacher_finetune={"vit": "all", "cnn": "all"}),
    # Every model's Kinetics-400 weights from torchvision (the 3D ResNets resize 224 -> 112).
    "torchvision": dict(vit_teacher="mvit_v2_s", cnn_teacher="r2plus1d_18", student="mc3_18",
                        clip=dict(num_frames=16, frame_stride=4, size=224),
                        teacher_finetune={"vit": "all", "cnn": "all"}),
}


# ---------------------------------------------------------------------------------------------
# 5. Cost: parameters and multiply-accumulates
# ---------------------------------------------------------------------------------------------
def count_params(module: nn.Module) -> int:
    """Number of parameters (buffers such as BatchNorm statistics not included)."""
    return sum(p.numel() for p in module.parameters())


def count_gmacs(module: nn.Module, input_shape) -> float:
    """Giga multiply-accumulates per view for an input of shape (3, L, H, W) or (B, 3, L, H, W).

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
        map_shape = "x".join(map(str, (dims["map"], *dims["grid"])))  # C x L' x H' x W'
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
    # the 9 classes of the synthetic dataset that synthetic.make_synthetic_hmdb51 writes by default.
    for preset in PRESETS:
        print(_preset_table(preset, num_classes=9 if preset == "tiny" else 400) + "\n")
    print("Paper: X3D-S vs MViTv2-S, 3.79M vs 34.54M parameters (~89% fewer), "
          "1.96 vs 64.22 GMACs (~96% fewer).")
