"""models.py as an executable specification: shapes of every model and preset, the feature taps,
X3D == pytorchvideo's create_x3d (the oracle), cost figures == the published tables, checkpoint
loading with a new head, the input adapters, and the message when weights cannot be downloaded.

Full-size models are only built and run on the meta device (shapes, no compute), so the whole file
takes seconds on a CPU; real forwards use the tiny variants or small inputs.
"""
import urllib.error

import pytest
import torch
from torchvision.models.video.mvit import MViT

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


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("name", FULL)
def test_full_size_model_outputs_logits_at_native_input(name):
    model = build_meta(name, num_classes=7)
    spec = models.input_spec(name)
    with torch.no_grad():
        assert model.eval()(native_batch(spec, device="meta")).shape == (2, 7)


@pytest.mark.parametrize("name", TINY)
def test_tiny_model_outputs_logits_at_native_input(name):
    model = models.build_model(name, num_classes=9)
    assert model(native_batch(models.input_spec(name))).shape == (2, 9)


def test_x3d_pools_adaptively_so_any_input_size_works():
    model = models.build_model("x3d_s_tiny", 5).eval()
    for T, S in ((4, 32), (8, 48), (5, 40)):
        with torch.no_grad():
            assert model(torch.randn(1, 3, T, S, S)).shape == (1, 5)


def test_unknown_model_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="x3d_s_tiny"):
        models.build_model("x3d_z", 10)
    with pytest.raises(ValueError, match="mvit_v2_s"):
        models.input_spec("x3d_z")


# ----------------------------------------------------------------------------- presets
@pytest.mark.parametrize("preset", sorted(models.PRESETS))
def test_preset_names_three_models_and_a_clip_every_adapter_accepts(preset):
    p = models.PRESETS[preset]
    assert set(p) == {"vit_teacher", "cnn_teacher", "student", "clip"}
    assert set(p["clip"]) == {"num_frames", "frame_stride", "size"}
    clip = torch.zeros(1, 3, p["clip"]["num_frames"], p["clip"]["size"], p["clip"]["size"],
                       dtype=torch.uint8)
    for role in ("vit_teacher", "cnn_teacher", "student"):
        spec = models.input_spec(p[role])
        x = models.adapt_input(clip, spec)
        assert x.shape == (1, 3, spec.frames, spec.size, spec.size)
        with torch.no_grad():  # shapes only (meta device); real forwards are tested above
            assert build_meta(p[role], 3).eval()(x.to("meta")).shape == (1, 3)


def test_paper_and_torchvision_presets_use_the_named_models():
    def roles(preset):
        return tuple(models.PRESETS[preset][k] for k in ("vit_teacher", "cnn_teacher", "student"))

    assert roles("paper") == ("mvit_v2_s", "x3d_m", "x3d_s")
    assert roles("torchvision") == ("mvit_v2_s", "r2plus1d_18", "mc3_18")
    clip = models.PRESETS["paper"]["clip"]
    assert (clip["num_frames"], clip["size"]) == (16, 224)


def test_tiny_teachers_have_clearly_more_capacity_than_the_student():
    p = models.PRESETS["tiny"]
    cost = {}
    for role in ("vit_teacher", "cnn_teacher", "student"):
        spec = models.input_spec(p[role])
        m = models.build_model(p[role], 9)
        shape = (3, spec.frames, spec.size, spec.size)
        cost[role] = (models.count_params(m), models.count_gmacs(m, shape))
    for teacher in ("vit_teacher", "cnn_teacher"):
        assert cost[teacher][0] > 3 * cost["student"][0]  # parameters
        assert cost[teacher][1] > 3 * cost["student"][1]  # multiply-accumulates


def test_demo_table_shows_the_papers_reductions():
    table = models._preset_table("paper")
    assert "89.0% fewer parameters" in table and "96.9% fewer multiply-accumulates" in table


# ----------------------------------------------------------------------------- feature taps
@pytest.mark.parametrize("name", FULL + TINY)
def test_feature_tap_returns_map_and_embed_with_documented_shapes(name):
    spec = models.input_spec(name)
    model = build_meta(name, 6).eval()
    with torch.no_grad():
        logits, feats = models.FeatureTap(model)(native_batch(spec, device="meta"))
    assert set(feats) == {"map", "embed"}
    assert logits.shape == (2, 6)
    assert feats["map"].dim() == 5 and feats["map"].shape[0] == 2
    assert feats["embed"].dim() == 2 and feats["embed"].shape[0] == 2
    C, *grid = feats["map"].shape[1:]
    assert models.feature_dims(model, spec) == {"map": C, "embed": feats["embed"].shape[1],
                                                "grid": tuple(grid)}


def test_feature_shapes_of_the_paper_models():
    # X3D: last stage = 192 channels at stride 32 (224 -> 7, 160 -> 5), no temporal stride; the
    # head's 2048-d embedding. MViTv2-S: 768 channels on an 8x7x7 token grid, class token of 768.
    assert models.feature_dims(build_meta("x3d_m"), models.input_spec("x3d_m")) == \
        {"map": 192, "embed": 2048, "grid": (16, 7, 7)}
    assert models.feature_dims(build_meta("x3d_s"), models.input_spec("x3d_s")) == \
        {"map": 192, "embed": 2048, "grid": (13, 5, 5)}
    assert models.feature_dims(build_meta("mvit_v2_s"), models.input_spec("mvit_v2_s")) == \
        {"map": 768, "embed": 768, "grid": (8, 7, 7)}


@pytest.mark.parametrize("name,size", [("x3d_s_tiny", 32), ("x3d_m_tiny", 32), ("mvit_tiny", 32),
                                       ("r3d_18", 32), ("swin3d_t", 64)])
def test_embed_is_what_the_classifier_reads(name, size):
    # Oracle: feeding the tapped embedding to the model's own classifier reproduces the logits.
    model = models.build_model(name, 4).eval()
    x = torch.randn(2, 3, 8, size, size)
    with torch.no_grad():
        logits, feats = models.FeatureTap(model)(x)
        classifier = model.get_submodule(models._tap_points(model).classifier)
        torch.testing.assert_close(classifier(feats["embed"]), logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "class token"])
def test_mvit_map_is_the_normalized_patch_tokens_without_the_class_token(pooling):
    model = models.build_model("mvit_tiny", 4).eval()
    if pooling == "class token":  # the same weights read as torchvision's MViT (MViTv2-S's way)
        model.__class__ = MViT
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        logits, feats = models.FeatureTap(model)(x)
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
    _, train_feats = models.FeatureTap(model.train())(x)  # nothing else in mvit_tiny is random
    with torch.no_grad():
        _, eval_feats = models.FeatureTap(model.eval())(x)
    torch.testing.assert_close(train_feats["embed"], eval_feats["embed"])
    train_feats["embed"].sum().backward()  # the graph survives the in-place write
    assert model.conv_proj.weight.grad.abs().sum() > 0


def test_feature_tap_leaves_the_plain_student_untouched_and_passes_gradients():
    student = models.build_model("x3d_s_tiny", 9)
    keys = list(student.state_dict())
    tap = models.FeatureTap(student)
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


# ----------------------------------------------------------------------------- X3D == pytorchvideo
@pytest.mark.parametrize("name,depth_factor", [("x3d_s", 2.2), ("x3d_l", 5.0)])
def test_x3d_matches_pytorchvideo_create_x3d_key_for_key_and_logit_for_logit(name, depth_factor,
                                                                             tmp_path):
    x3d = pytest.importorskip("pytorchvideo.models.x3d")
    # pytorchvideo bakes its head's pool kernel from the input it is built for; building it for a
    # small 4x64x64 clip makes that kernel cover the whole last-stage map (4x2x2), where its
    # AvgPool3d and our global average are the same function. head_activation=None: logits, not
    # softmax probabilities.
    T, S = 4, 64
    ref = x3d.create_x3d(input_clip_length=T, input_crop_size=S, depth_factor=depth_factor,
                         model_num_class=400, head_activation=None)
    randomize_(ref).eval()
    ours = models.build_model(name, 400)
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in ref.state_dict().items()}
    # through the loading path, in the layout of pytorchvideo's published checkpoints
    path = tmp_path / "X3D.pyth"
    torch.save({"model_state": ref.state_dict()}, path)
    ours = models.build_model(name, 400, pretrained=str(path)).eval()
    x = torch.randn(2, 3, T, S, S)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- costs
@pytest.mark.parametrize("name,input_shape,params,gmacs", [
    # torchvision 0.29 weight metadata (num_params, _ops) and pytorchvideo's X3D table
    ("mvit_v2_s", (3, 16, 224, 224), 34_537_744, 64.224),
    ("r3d_18", (3, 16, 112, 112), 33_371_472, 40.697),
    ("s3d", (3, 16, 224, 224), 8_320_048, 17.979),
    ("x3d_s", (3, 13, 160, 160), 3_794_274, 1.96),
    ("x3d_m", (3, 16, 224, 224), 3_794_274, 4.73),
])
def test_cost_figures_match_the_published_tables(name, input_shape, params, gmacs):
    model = build_meta(name, 400)
    assert models.count_params(model) == pytest.approx(params, rel=0.01)
    assert models.count_gmacs(model, input_shape) == pytest.approx(gmacs, rel=0.01)


def test_count_gmacs_counts_multiply_accumulates_per_view_including_attention():
    class Attention(torch.nn.Module):
        def forward(self, x):  # (B, N, D): q k^T then attn v, 2 * N * N * D MACs per view
            return (x @ x.transpose(1, 2)).softmax(-1) @ x

    conv = torch.nn.Conv3d(3, 8, kernel_size=3, padding=1, bias=False)
    # every output element costs 3*3*3*3 MACs; 8 * 4*16*16 outputs per view; batch divides out
    assert models.count_gmacs(conv, (2, 3, 4, 16, 16)) == pytest.approx(8 * 4 * 16 * 16 * 81 / 1e9)
    assert models.count_gmacs(Attention(), (3, 10, 6)) == pytest.approx(2 * 10 * 10 * 6 / 1e9)


def test_cpu_latency_is_positive_and_leaves_the_model_as_it_was():
    model = models.build_model("x3d_s_tiny", 9).train()
    ms = models.cpu_latency_ms(model, (3, 8, 32, 32), warmup=1, repeats=2)
    assert ms > 0 and model.training


# ----------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("name,wrap", [("x3d_s_tiny", "model_state"), ("mvit_tiny", None)])
def test_local_checkpoint_loads_and_the_head_is_replaced_for_new_classes(name, wrap, tmp_path,
                                                                         capsys):
    source = randomize_(models.build_model(name, 10))
    state = source.state_dict()
    if wrap is None:  # a plain state dict saved from DistributedDataParallel
        ckpt = {"module." + k: v for k, v in state.items()}
    else:
        ckpt = {wrap: state, "epoch": 3}
    path = tmp_path / "ckpt.pt"
    torch.save(ckpt, path)

    model = models.build_model(name, 5, pretrained=str(path))
    head = models._tap_points(model).classifier
    for k, v in model.state_dict().items():
        if k.startswith(head + "."):
            assert v.shape[0] == 5  # new classifier, fresh init
        else:
            torch.testing.assert_close(v, state[k])
    report = capsys.readouterr().out
    assert "dropped" in report and f"{head}.weight" in report


def test_checkpoint_of_another_model_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(models.build_model("x3d_m_tiny", 9).state_dict(), path)
    with pytest.raises(ValueError, match="another model"):
        models.build_model("x3d_s_tiny", 9, pretrained=str(path))


@pytest.mark.parametrize("name,url_part", [("x3d_s", "pytorchvideo/model_zoo/kinetics/X3D_S.pyth"),
                                           ("mc3_18", "download.pytorch.org/models/mc3_18")])
def test_impossible_download_names_the_url_and_the_local_file_alternative(name, url_part,
                                                                           monkeypatch):
    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(RuntimeError) as err:
        models.build_model(name, 51, pretrained=True)
    msg = str(err.value)
    assert url_part in msg and "pretrained='path/to/" in msg and "URLError" in msg


def test_tiny_models_have_no_published_weights():
    with pytest.raises(ValueError, match="no published weights"):
        models.build_model("x3d_s_tiny", 9, pretrained=True)


# ----------------------------------------------------------------------------- input adapters
def test_adapter_resamples_frames_uniformly_and_resizes_to_the_native_input():
    spec = models.input_spec("x3d_s")  # 13 x 160 x 160
    T = 16
    # frame t is filled with the value 10 * t, so the chosen frames can be read back
    clip = (torch.arange(T, dtype=torch.uint8) * 10).view(1, 1, T, 1, 1).expand(2, 3, T, 224, 224)
    x = models.adapt_input(clip, spec)
    assert x.shape == (2, 3, 13, 160, 160) and x.dtype == torch.float32
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1, 1)
    picked = ((x * std + mean) * 255 / 10).round()[0, 0, :, 0, 0]
    # uniform index selection: round(linspace(0, 15, 13))
    assert picked.tolist() == [0, 1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 14, 15]


def test_adapter_normalizes_with_the_models_mean_and_std():
    spec = models.input_spec("x3d_m_tiny")  # 8x32x32: the clip passes through unresampled
    clip = torch.randint(0, 256, (2, 3, 8, 32, 32), dtype=torch.uint8)
    expected = (clip.float() / 255 - torch.tensor(spec.mean).view(1, 3, 1, 1, 1)) \
        / torch.tensor(spec.std).view(1, 3, 1, 1, 1)
    torch.testing.assert_close(models.adapt_input(clip, spec), expected)


def test_adapter_gives_mvit_v2_s_its_only_accepted_input_and_keeps_constant_frames_constant():
    spec = models.input_spec("mvit_v2_s")
    assert (spec.frames, spec.size) == (16, 224)
    clip = torch.full((1, 3, 8, 112, 112), 115, dtype=torch.uint8)  # 115 / 255 = 0.45 = mean
    x = models.adapt_input(clip, spec)
    assert x.shape == (1, 3, 16, 224, 224)
    torch.testing.assert_close(x, torch.zeros_like(x), atol=1e-2, rtol=0)


def test_adapter_rejects_float_clips_with_an_actionable_message():
    with pytest.raises(TypeError, match="uint8"):
        models.adapt_input(torch.zeros(1, 3, 8, 32, 32), models.input_spec("x3d_s_tiny"))


@pytest.mark.parametrize("preset", ["tiny", "paper"])
def test_the_student_sees_a_smaller_clip_than_its_teachers(preset):
    # The paper's X3D-S reads 13x160 where both teachers read 16x224; the tiny preset keeps that
    # shape of the setting (6x24 vs 8x32), so the teachers see more than the student can.
    p = models.PRESETS[preset]
    s = models.input_spec(p["student"])
    for teacher in (p["vit_teacher"], p["cnn_teacher"]):
        t = models.input_spec(teacher)
        assert s.frames < t.frames and s.size < t.size
