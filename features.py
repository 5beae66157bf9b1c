"""Feature taps: a model's logits plus the two features the distillation losses read.

Reading guide
-------------
The contract between the models and the losses. `FeatureTap(model)(x)` returns

    (logits (B, num_classes), {"map": (B, C, L', H', W'), "embed": (B, D)})

  "map"   the last stage's feature map, on the model's last grid of L' x H' x W' positions.
          sdd.py reads it: the SDB predicts the residual between the two teachers' maps from
          the student's map (paper: SDD).
  "embed" exactly the vector the classifier reads (a test re-applies each model's classifier to
          it and gets the logits back). rkd.py reads it: the relations between the clips of a
          batch (paper: RKD, ViT teacher -> student).

Which tensor each family gives (the paper names the features only loosely; our reading):
  X3D          map: res5's output, before the head's 1x1x1 conv; embed: the 2048-d projected pool.
  MViT         map: the final-norm patch tokens on the last token grid, class token removed,
               reshaped to (B, C, L', H', W'); embed: the class token (MViTv2-S), or the mean of
               the patch tokens for a model whose classifier reads that (`readout = "mean"`,
               models.MeanPoolMViT).
  3D ResNets   map: layer4; embed: the global average.
  S3D          map: features; embed: the average of its pooled features.
  Swin3D       map: the final-norm tokens (channels-last, permuted); embed: the global average.

Why hooks that exist only during `FeatureTap.forward`: the wrapped module stays the plain,
deployable model (same state_dict keys, same behaviour when called directly), so the saved
student carries no training-only code or weights. Gradients flow through both features.
"""
import copy
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
from torchvision.models.video.mvit import MViT
from torchvision.models.video.resnet import VideoResNet
from torchvision.models.video.s3d import S3D
from torchvision.models.video.swin_transformer import SwinTransformer3d

from x3d import X3D


class TapPoints(NamedTuple):
    """Module names (as in `model.named_modules()`) where each family's features are read."""

    map: str  # output: the last stage's feature map (tokens for MViT, channels-last for Swin)
    embed: str  # output: the pooled embedding the classifier reads
    classifier: str  # the final linear layer, replaced for a new number of classes


def tap_points(model: nn.Module) -> TapPoints:
    """Where the features of `model`'s family are read (module names of `model.named_modules()`)."""
    if isinstance(model, X3D):
        return TapPoints(map="blocks.4", embed="blocks.5.pool", classifier="blocks.5.proj")
    if isinstance(model, VideoResNet):  # r3d_18, mc3_18, r2plus1d_18
        return TapPoints(map="layer4", embed="avgpool", classifier="fc")
    if isinstance(model, MViT):  # normalized tokens: the patch tokens = map; the class token
        # (or the patch tokens' mean, for readout = "mean") = embed
        return TapPoints(map="norm", embed="norm", classifier="head.1")
    if isinstance(model, SwinTransformer3d):
        return TapPoints(map="norm", embed="avgpool", classifier="head")
    if isinstance(model, S3D):
        return TapPoints(map="features", embed="avgpool", classifier="classifier.1")
    raise TypeError(f"no feature taps known for {type(model).__name__}; "
                    f"expected a model from build_model")


class FeatureTap(nn.Module):
    """Wraps a plain model: forward(x) -> (logits, {"map": (B, C, L', H', W'), "embed": (B, D)}).

    The hooks exist only while `FeatureTap.forward` runs, so `tap.model` stays the plain module:
    same state_dict keys (`tap.model.state_dict()`), same behaviour when called directly. Gradients
    flow through both features. After a forward, `map_channels` and `embed_dim` hold C and D;
    `feature_dims(model, spec)` gives them (and the map's grid) without running a real forward.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.points = tap_points(model)
        self.map_channels: Optional[int] = None
        self.embed_dim: Optional[int] = None

    def forward(self, x):
        grabbed = {}

        def keep(key, transform=lambda output: output):
            def hook(module, inputs, output):
                grabbed[key] = transform(output)
            return hook

        hooks = [(self.points.map, keep("map"))]
        if isinstance(self.model, MViT):
            if getattr(self.model, "readout", "class_token") == "mean":
                read = lambda tokens: tokens[:, 1:].mean(dim=1)  # the patch tokens' mean
            else:  # clone the class token now: the head's in-place dropout rewrites it afterwards
                read = lambda tokens: tokens[:, 0].clone()
            hooks.append((self.points.embed, keep("embed", read)))
            # MViT's blocks return (tokens, (L', H', W')): the last block tells the token grid.
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
            tokens, (Lp, Hp, Wp) = grabbed["map"], grabbed["grid"]
            B, N, C = tokens.shape  # N = 1 class token + L'H'W' patch tokens
            # (B, N-1, C) -> (B, C, N-1) -> (B, C, L', H', W'); tokens run over time, then height, then width
            fmap = tokens[:, 1:].transpose(1, 2).reshape(B, C, Lp, Hp, Wp)
            embed = grabbed["embed"]  # (B, C) class token or patch-token mean
        elif isinstance(self.model, SwinTransformer3d):
            fmap = grabbed["map"].permute(0, 4, 1, 2, 3)  # (B, L', H', W', C) -> (B, C, L', H', W')
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


def feature_dims(model: nn.Module, spec) -> dict:
    """Widths of the features of `model` at its input `spec`: {"map": C, "embed": D,
    "grid": (L', H', W')}, the map being (B, C, L', H', W') and the embedding (B, D).

    Runs the forward on a meta-device copy: shapes only, no compute, the model itself untouched.
    """
    meta = copy.deepcopy(model).to("meta").eval()
    x = torch.empty(1, 3, spec.frames, spec.size, spec.size, device="meta")
    with torch.no_grad():
        _, feats = FeatureTap(meta)(x)
    C, *grid = feats["map"].shape[1:]
    return {"map": C, "embed": feats["embed"].shape[1], "grid": tuple(grid)}


