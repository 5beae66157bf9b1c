"""The tiny preset's model zoo (weights/, written by pretrain.py): every shipped file loads strictly
into its model, its recorded recipe is the one the code would use now (stale weights fail here),
--pretrained in the tiny preset reads it, and a CI-sized pretrain.py run keeps the code path alive."""
import json
import os

import pytest
import torch

import checkpoints
import models
import pretrain
import synthetic
from features import tap_points

ZOO = checkpoints.ZOO_MODELS


@pytest.mark.parametrize("name", ZOO)
def test_shipped_recipe_matches_what_pretrain_py_would_do_now(name):
    with open(os.path.join(checkpoints.ZOO_DIR, f"{name}.json")) as f:
        card = json.load(f)
    assert card["recipe"] == pretrain.recipe(name), (
        f"weights/{name}.pt is stale: its recipe differs from pretrain.py's; rerun "
        f"`python pretrain.py --models {name}` and commit weights/")
    assert card["classes"] == sorted(synthetic.corpus_classes())
    assert 0 < card["held_out"]["clip_acc@1"] <= 100 and card["held_out"]["videos"] == 432
    assert card["command"].startswith("python pretrain.py") and card["torch"] and card["seconds"] > 0


@pytest.mark.parametrize("name", ZOO)
def test_shipped_weights_load_strictly_and_are_small(name):
    path = checkpoints.zoo_path(name)
    assert os.path.getsize(path) < 2 * 2**20  # weights/ lives in git: each file stays small
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = models.build_model(name, len(synthetic.corpus_classes()))
    model.load_state_dict(state, strict=True)  # every key, every shape
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())


@pytest.mark.parametrize("name", ZOO)
def test_pretrained_true_in_the_tiny_preset_reads_the_zoo_with_a_new_head(name):
    state = torch.load(checkpoints.zoo_path(name), map_location="cpu", weights_only=True)
    model = models.build_model(name, 9, pretrained=True)
    head = tap_points(model).classifier + "."
    for k, v in model.state_dict().items():
        if k.startswith(head):
            assert v.shape[0] == 9  # a fresh classifier for the target's classes
        else:
            want = state[k].float() if state[k].is_floating_point() else state[k]  # fp16 -> fp32
            assert v.dtype == want.dtype and torch.equal(v, want), k


def test_quick_pretraining_writes_a_loadable_file_and_its_card(tmp_path):
    out = tmp_path / "zoo"
    cards = pretrain.main(["--quick", "--models", "x3d_s_tiny", "--workers", "0", "--out", str(out),
                           "--work-dir", str(tmp_path / "work"), "--corpus-root", str(tmp_path / "corpus")])
    card = json.loads((out / "x3d_s_tiny.json").read_text())
    assert card == json.loads(json.dumps(cards["x3d_s_tiny"]))
    assert card["recipe"] == pretrain.recipe("x3d_s_tiny", quick=True) != pretrain.recipe("x3d_s_tiny")
    state = torch.load(out / "x3d_s_tiny.pt", weights_only=True)
    models.build_model("x3d_s_tiny", 36).load_state_dict(state, strict=True)


def test_quick_pretraining_never_writes_into_the_shipped_zoo():
    with pytest.raises(SystemExit, match="another folder"):
        pretrain.main(["--quick", "--out", checkpoints.ZOO_DIR])
