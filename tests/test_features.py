"""features.py: the feature taps give the documented {"map", "embed"} of every model family."""
import pytest
import torch
from torchvision.models.video.mvit import MViT

import models
from features import FeatureTap, feature_dims, tap_points
from helpers import FULL, TINY, build_meta, native_batch


@pytest.mark.parametrize("name", FULL + TINY)
def test_feature_tap_returns_map_and_embed_with_documented_shapes(name):
    spec = models.input_spec(name)
    model = build_meta(name, 6).eval()
    with torch.no_grad():
        logits, feats = FeatureTap(model)(native_batch(spec, device="meta"))
    assert set(feats) == {"map", "embed"}
    assert logits.shape == (2, 6)
    assert feats["map"].dim() == 5 and feats["map"].shape[0] == 2
    assert feats["embed"].dim() == 2 and feats["embed"].shape[0] == 2
    C, *grid = feats["map"].shape[1:]
    assert feature_dims(model, spec) == {"map": C, "embed": feats["embed"].shape[1],
                                                "grid": tuple(grid)}


def test_feature_shapes_of_the_paper_models():
    # X3D: last stage = 192 channels at stride 32 (224 -> 7, 160 -> 5), no temporal stride; the
    # head's 2048-d embedding. MViTv2-S: 768 channels on an 8x7x7 token grid, class token of 768.
    assert feature_dims(build_meta("x3d_m"), models.input_spec("x3d_m")) == \
        {"map": 192, "embed": 2048, "grid": (16, 7, 7)}
    assert feature_dims(build_meta("x3d_s"), models.input_spec("x3d_s")) == \
        {"map": 192, "embed": 2048, "grid": (13, 5, 5)}
    assert feature_dims(build_meta("mvit_v2_s"), models.input_spec("mvit_v2_s")) == \
        {"map": 768, "embed": 768, "grid": (8, 7, 7)}


@pytest.mark.parametrize("name,size", [("x3d_s_tiny", 32), ("x3d_m_tiny", 32), ("mvit_tiny", 32),
                                       ("r3d_18", 32), ("swin3d_t", 64)])
def test_embed_is_what_the_classifier_reads(name, size):
    # Oracle: feeding the tapped embedding to the model's own classifier reproduces the logits.
    model = models.build_model(name, 4).eval()
    x = torch.randn(2, 3, 8, size, size)
    with torch.no_grad():
        logits, feats = FeatureTap(model)(x)
        classifier = model.get_submodule(tap_points(model).classifier)
        torch.testing.assert_close(classifier(feats["embed"]), logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "class token"])
def test_mvit_map_is_the_normalized_patch_tokens_without_the_class_token(pooling):
    model = models.build_model("mvit_tiny", 4).eval()
    if pooling == "class token":  # the same weights read as torchvision's MViT (MViTv2-S's way)
        model.__class__ = MViT
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        logits, feats = FeatureTap(model)(x)
        # the same tokens by hand: patchify, class token, blocks, norm
        t = model.pos_encoding(model.conv_proj(x).flatten(2).transpose(1, 2))
        thw = (model.pos_encoding.temporal_size,) + model.pos_encoding.spatial_size
        for block in model.blocks:
            t, thw = block(t, thw)
        t = model.norm(t)  # (B, 1 + T'H'W', C)
    B, N, C = t.shape
    torch.testing.assert_close(feats["embed"], t[:, 1:].mean(1) if pooling == "mean" else t[:, 0])
    torch.testing.assert_close(logits, model.head(feats["embed"]))
    torch.testing.assert_close(feats["map"], t[:, 1:].transpose(1, 2).reshape(B, C, *thw))


def test_mvit_embed_is_read_before_the_heads_in_place_dropout():
    # torchvision's MViT head starts with Dropout(inplace=True) on the class token
    model = models.build_model("mvit_tiny", 4)
    model.__class__ = MViT  # read the class token, as MViTv2-S does
    model.head[0].p = 0.5
    x = torch.randn(2, 3, 8, 32, 32)
    _, train_feats = FeatureTap(model.train())(x)  # nothing else in mvit_tiny is random
    with torch.no_grad():
        _, eval_feats = FeatureTap(model.eval())(x)
    torch.testing.assert_close(train_feats["embed"], eval_feats["embed"])
    # the graph survives the in-place write. Not .sum(): the embedding leaves a LayerNorm whose
    # gain starts at 1, and a LayerNorm's outputs sum to a constant, so that gradient is ~0.
    weights = torch.randn(train_feats["embed"].shape, generator=torch.Generator().manual_seed(0))
    (train_feats["embed"] * weights).sum().backward()
    assert model.conv_proj.weight.grad.abs().sum() > 0


def test_feature_tap_leaves_the_plain_student_untouched_and_passes_gradients():
    student = models.build_model("x3d_s_tiny", 9)
    keys = list(student.state_dict())
    tap = FeatureTap(student)
    logits, feats = tap(torch.randn(2, 3, 8, 32, 32))
    # the deployable student keeps its keys; the hooks are gone after the call
    assert list(tap.model.state_dict()) == keys
    assert list(tap.state_dict()) == ["model." + k for k in keys]
    assert all(not m._forward_hooks for m in student.modules())
    assert (tap.map_channels, tap.embed_dim) == (64, 128)
    # both features are part of the graph: losses on them train the student
    (feats["map"].square().mean() + feats["embed"].square().mean()).backward()
    # (the stem: a fresh X3D's residual branches start at zero and pass no gradient upstream yet)
    assert student.blocks[0].conv.conv_t.weight.grad.abs().sum() > 0
