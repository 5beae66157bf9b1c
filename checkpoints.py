"""Checkpoints: published Kinetics-400 weights, local files, and our own trained models.

Reading guide
-------------
Paper (arXiv 2511.09469): the teachers and the student start from Kinetics-400 weights and are
fine-tuned on HMDB51. This file finds and loads such weights; models.build_model calls
`load_pretrained`, train.py calls `load_state` for a teacher fine-tuned elsewhere.

  load_pretrained(model, name, pretrained)   pretrained=True: download the published weights
      (torchvision's for its models, pytorchvideo's model zoo for X3D) or read them from
      torch.hub's cache; for the tiny preset's models, the repo's own zoo `weights/<name>.pt`
      (their stand-in for Kinetics-400, written by pretrain.py); a path: a local checkpoint. The classifier is replaced for a new number
      of classes (its tensors of another shape are dropped and reported); every other tensor
      must match, so a checkpoint of another model fails with the names that differ.
  load_state(model, path, what)              strict: a state dict this project saved itself.

Accepted files: a plain state dict, or a dict holding one under "model_state" (pytorchvideo,
PySlowFast), "state_dict" or "model"; a "module." prefix left by DistributedDataParallel is
removed. Always `weights_only=True`: unpickling arbitrary objects can run code.
Our machines cannot download: every error says where to put the file for offline use.
"""
import os
import pickle

import torch
import torch.nn as nn
import torchvision

from features import tap_points

# The tiny preset's model zoo: pretrained on the synthetic "Kinetics" by pretrain.py, shipped.
ZOO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
ZOO_MODELS = ("mvit_tiny", "x3d_m_tiny", "x3d_s_tiny")

# pytorchvideo's Kinetics-400 X3D checkpoints (its model zoo); the weights are under "model_state".
_X3D_URLS = {
    "x3d_xs": "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/X3D_XS.pyth",
    "x3d_s": "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/X3D_S.pyth",
    "x3d_m": "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/X3D_M.pyth",
    "x3d_l": "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/X3D_L.pyth",
}


def load_pretrained(model: nn.Module, name: str, pretrained) -> nn.Module:
    """Load published (pretrained=True) or local (a path) weights into `model`, new classifier."""
    if pretrained is True and name in ZOO_MODELS:
        pretrained = zoo_path(name)
    if pretrained is True:
        _load_with_new_head(model, _download_state_dict(name), name, where=_pretrained_url(name))
    elif pretrained:  # a path to a local file
        path = str(pretrained)
        ckpt = _torch_load_safely(
            lambda: torch.load(path, map_location="cpu", weights_only=True), path)
        _load_with_new_head(model, _state_dict_of(ckpt, path), name, where=path)
    return model


def zoo_path(name: str) -> str:
    """weights/<name>.pt of the tiny preset's zoo, or an error that says how to make it."""
    path = os.path.join(ZOO_DIR, f"{name}.pt")
    if not os.path.exists(path):
        raise ValueError(f"{name!r} has no published weights (the tiny variants are ours) and "
                         f"{path} is missing: make the zoo with `python pretrain.py`, train from "
                         f"scratch (train.py --teacher-init scratch --student-init scratch), or "
                         f"pass a checkpoint's path: pretrained='path/to/file.pt'")
    return path


def load_state(model: nn.Module, path: str, what: str) -> nn.Module:
    """Strictly load a state dict saved by this project; `what` names the CLI flag that gave it."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise SystemExit(f"{what} checkpoint {path} does not fit this model "
                         f"(other classes or another architecture?): {str(e)[:600]}") from None
    return model


def _pretrained_url(name: str) -> str:
    if name in _X3D_URLS:
        return _X3D_URLS[name]
    try:
        return torchvision.models.get_model_weights(name).DEFAULT.url
    except ValueError:  # not a torchvision model
        pass
    raise ValueError(f"{name!r} has no published weights (the tiny variants are ours): train "
                     f"it with train.py, or pass a checkpoint's path: pretrained='path/to/file.pt'")


def _download_state_dict(name: str) -> dict:
    """Download (or read from torch.hub's cache) the published weights, or say what to do."""
    url = _pretrained_url(name)
    try:
        # torchvision's file names carry a hash prefix for torch.hub to verify; pytorchvideo's don't
        ckpt = _torch_load_safely(
            lambda: torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True,
                                                       check_hash=name not in _X3D_URLS,
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
    head = tap_points(model).classifier + "."
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


