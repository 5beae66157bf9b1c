"""checkpoints.py: local checkpoints load with a new head, wrong ones are refused, and an
impossible download says what to do."""
import urllib.error

import pytest
import torch

import checkpoints
import models
from features import tap_points
from helpers import randomize_


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
    head = tap_points(model).classifier
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


def test_tiny_models_have_no_published_weights(tmp_path, monkeypatch):
    # pretrained=True reads the repo's own zoo for them; without it, the error says what to do.
    monkeypatch.setattr(checkpoints, "ZOO_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="no published weights") as err:
        models.build_model("x3d_s_tiny", 9, pretrained=True)
    assert "python pretrain.py" in str(err.value) and "--teacher-init scratch" in str(err.value)
