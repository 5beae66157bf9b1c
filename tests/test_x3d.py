"""x3d.py: X3D == pytorchvideo's create_x3d (the oracle), key for key and logit for logit."""
import pytest
import torch

import models
from helpers import randomize_


def test_x3d_pools_adaptively_so_any_input_size_works():
    model = models.build_model("x3d_s_tiny", 5).eval()
    for T, S in ((4, 32), (8, 48), (5, 40)):
        with torch.no_grad():
            assert model(torch.randn(1, 3, T, S, S)).shape == (1, 5)


@pytest.mark.parametrize("name,depth_factor", [("x3d_s", 2.2), ("x3d_l", 5.0)])
def test_x3d_matches_pytorchvideo_create_x3d_key_for_key_and_logit_for_logit(name, depth_factor,
                                                                             tmp_path):
    x3d = pytest.importorskip("pytorchvideo.models.x3d")
    # pytorchvideo bakes its head's pool kernel from the input it is built for; building it for a
    # small 4x64x64 clip makes that kernel cover the whole last-stage map (4x2x2), where its
    # AvgPool3d and our global average are the same function. head_activation=None: logits, not
    # softmax probabilities.
    L, S = 4, 64
    ref = x3d.create_x3d(input_clip_length=L, input_crop_size=S, depth_factor=depth_factor,
                         model_num_class=400, head_activation=None)
    randomize_(ref).eval()
    ours = models.build_model(name, 400)
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in ref.state_dict().items()}
    # through the loading path, in the layout of pytorchvideo's published checkpoints
    path = tmp_path / "X3D.pyth"
    torch.save({"model_state": ref.state_dict()}, path)
    ours = models.build_model(name, 400, pretrained=str(path)).eval()
    x = torch.randn(2, 3, L, S, S)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)
