"""models.py as an executable specification: shapes of every model and preset, cost figures ==
the published tables, and the input adapters.

Full-size models are only built and run on the meta device (shapes, no compute), so the whole file
takes seconds on a CPU; real forwards use the tiny variants or small inputs.
"""
import pytest
import torch

import models
from helpers import FULL, TINY, build_meta, native_batch


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


def test_unknown_model_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="x3d_s_tiny"):
        models.build_model("x3d_z", 10)
    with pytest.raises(ValueError, match="mvit_v2_s"):
        models.input_spec("x3d_z")


# ------------------------------------------------------------------ fine-tuning only the top
@pytest.mark.parametrize("name", ["mvit_tiny", "x3d_m_tiny"])
def test_below_the_top_nothing_learns_and_backward_stops_at_the_top(name):
    model = models.build_model(name, num_classes=9)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    trained = models.freeze_below_top(model, name)
    top = {k for k, _ in model.named_parameters() if k.startswith(models.TOP_LAYERS[name])}
    assert {k for k, p in model.named_parameters() if p.requires_grad} == top
    assert trained == sum(p.numel() for k, p in model.named_parameters() if k in top)
    assert 0.3 < trained / models.count_params(model) < 0.9
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x = native_batch(models.input_spec(name), batch=4)
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
    opt.step()
    for k, p in model.named_parameters():
        if k in top:
            assert p.grad is not None
        else:  # never reached by the backward pass, never stepped
            assert p.grad is None and torch.equal(p, before[k]), k
    moved = [k for k in top if not torch.equal(dict(model.named_parameters())[k], before[k])]
    assert any("head" in k or "blocks.5" in k for k in moved), "the classifier must learn"


@pytest.mark.parametrize("name, last_stage", [("mvit_v2_s", "blocks.14."), ("x3d_m", "blocks.4."),
                                              ("r2plus1d_18", "layer4.")])
def test_the_top_of_a_full_size_teacher_is_its_last_stage_and_classifier(name, last_stage):
    model = build_meta(name)
    assert 0 < models.freeze_below_top(model, name) < models.count_params(model)
    names = [k for k, _ in model.named_parameters()]
    first = next(i for i, k in enumerate(names) if k.startswith(last_stage))
    # The parameters are registered in forward order: everything from the last stage on trains.
    assert [p.requires_grad for _, p in model.named_parameters()] == [i >= first for i in range(len(names))]


def test_a_model_without_a_defined_top_is_refused_by_name():
    with pytest.raises(ValueError, match="no top defined for 's3d'.*mvit_tiny"):
        models.freeze_below_top(build_meta("s3d"), "s3d")


# ----------------------------------------------------------------------------- presets
@pytest.mark.parametrize("preset", sorted(models.PRESETS))
def test_preset_names_three_models_and_a_clip_every_adapter_accepts(preset):
    p = models.PRESETS[preset]
    assert set(p) == {"vit_teacher", "cnn_teacher", "student", "clip", "teacher_finetune"}
    assert set(p["teacher_finetune"]) == {"vit", "cnn"}  # keyed by the teacher's role
    assert all(part in ("all", "top") for part in p["teacher_finetune"].values())
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
