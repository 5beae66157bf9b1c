"""Checkpoints: published Kinetics-400 weights, local files, and our own trained models.

Reading guide
-------------
Paper (arXiv 2511.09469): the teachers and the student start from Kinetics-400 weights and are
fine-tuned on HMDB51. This file finds and loads such weights; models.build_model calls
`load_pretrained`, train.py calls `load_state` for a teacher fine-tuned elsewhere.

  find_pretrained(names, pretrained_dir)    where the published Kinetics-400 weights of these
      models are on this machine, in this order: `pretrained_dir`/<the published file name>
      (train.py --pretrained-dir), torch.hub's cache (<hub dir>/checkpoints/), else downloaded
      into that cache (torchvision's files for its models, pytorchvideo's model zoo for X3D). The
      tiny preset's models read the repo's own zoo `weights/<name>.pt` instead (their stand-in for
      Kinetics-400, written by pretrain.py). Every file it can neither find nor download is
      listed in ONE `WeightsError`, with its URL and where to put it: a machine without internet
      learns about all of them at once.
  load_pretrained(model, name, pretrained)   pretrained=True: the file `find_pretrained` finds;
      a path: a local checkpoint. The classifier is replaced for a new number of classes (its
      tensors of another shape are dropped and reported); every other tensor must match, so a
      checkpoint of another model fails with the names that differ.
  load_state(model, path, what)              strict: a state dict this project saved itself.
  atomic_write(path, write)                  how every file of a run is written: to a temporary
      file, then renamed, so an interruption never leaves half a checkpoint or half a table.

Accepted files: a plain state dict, or a dict holding one under "model_state" (pytorchvideo,
PySlowFast), "state_dict" or "model"; a "module." prefix left by DistributedDataParallel is
removed. Always `weights_only=True`: unpickling arbitrary objects can run code.
Our machines cannot download: errors are `WeightsError`s that train.py prints without a
traceback; each says which files, where they were looked for and what to do.
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


class WeightsError(ValueError):
    """Weights that cannot be found, downloaded or loaded. The message names every file concerned
    and what to do; train.py prints it as an error without a traceback."""


def published_file(name: str) -> tuple:
    """(file name, URL) of model `name`'s published Kinetics-400 weights. The file name is the one
    they are published under, which is what `pretrained_dir` and torch.hub's cache are searched for."""
    if name in _X3D_URLS:
        url = _X3D_URLS[name]
    else:
        try:
            url = torchvision.models.get_model_weights(name).DEFAULT.url
        except ValueError:  # not a torchvision model
            raise WeightsError(f"{name!r} has no published weights (the tiny variants are ours): "
                               f"train it with train.py, or pass a checkpoint's path: "
                               f"pretrained='path/to/file.pt'") from None
    return url.rsplit("/", 1)[-1], url


def find_pretrained(names, pretrained_dir=None, dir_flag=None) -> dict:
    """{name: local file} holding the Kinetics-400 weights of each model, downloading if need be.

    Looked for in this order: the zoo (the tiny models), `pretrained_dir`/<published file name>,
    torch.hub's cache <hub dir>/checkpoints/<published file name> (where torch.hub and torchvision
    keep what they download, so a file fetched once by either is found offline later), else
    downloaded into that cache. Every file found nowhere that cannot be downloaded is listed in
    ONE WeightsError (all of them, not the first: a user without internet copies them in one go);
    `dir_flag` is how the caller's user gives `pretrained_dir` (train.py: "--pretrained-dir"), for
    that message. Nothing is loaded here, so checking a run's files costs no model building.
    """
    cache = os.path.join(torch.hub.get_dir(), "checkpoints")
    found, missing = {}, []  # missing: (name, file, url, the download's exception)
    for name in dict.fromkeys(names):  # each model once, in the given order
        if name in ZOO_MODELS:
            found[name] = zoo_path(name)
            continue
        file, url = published_file(name)
        path = next((os.path.join(d, file) for d in (pretrained_dir, cache)
                     if d and os.path.isfile(os.path.join(d, file))), None)
        if path is None:
            path = os.path.join(cache, file)
            try:
                os.makedirs(cache, exist_ok=True)
                # torchvision's file names carry a prefix of their SHA-256 for torch.hub to verify
                # (what load_state_dict_from_url(check_hash=True) does); pytorchvideo's carry none.
                digest = torch.hub.HASH_REGEX.search(file)
                torch.hub.download_url_to_file(url, path, digest.group(1) if digest else None,
                                               progress=True)
            # OSError: no network, DNS failure, HTTP error, timeout (URLError is one);
            # RuntimeError: torch.hub's hash check failed (a corrupted download)
            except (OSError, RuntimeError) as e:
                missing.append((name, file, url, e))
                continue
        found[name] = path
    if missing:
        raise WeightsError(_missing_message(missing, pretrained_dir, dir_flag, cache))
    return found


def _missing_message(missing, pretrained_dir, dir_flag, cache) -> str:
    """Every missing file with its URL, where it was looked for, and how to run offline."""
    rows = "\n".join(f"  {name:<12} {file:<24} {url}" for name, file, url, _ in missing)
    errors = [e for *_, e in missing]
    why = "; ".join(sorted({f"{type(e).__name__}: {e}" for e in errors}))
    if any(isinstance(e, OSError) for e in errors):
        why += "; this machine may have no internet access"
    looked = [f"torch.hub cache {cache}"]
    if pretrained_dir:
        looked.insert(0, f"{pretrained_dir} ({dir_flag})" if dir_flag else pretrained_dir)
    elif dir_flag:
        looked.insert(0, f"no {dir_flag} given")
    if dir_flag:
        fix = f"copy them, under these names, into one folder here and pass {dir_flag} FOLDER"
    else:  # a Python caller of build_model
        fix = "pass each file's path: build_model(name, num_classes, pretrained='path/to/FILE')"
    return (f"the Kinetics-400 weights of {len(missing)} model(s) are not on this machine and could "
            f"not be downloaded ({why}):\n{rows}\n"
            f"Looked in: {'; '.join(looked)}.\n"
            f"To run offline: download the file(s) above on a machine with internet access, then "
            f"{fix} (or copy them into {cache}).")


def load_pretrained(model: nn.Module, name: str, pretrained) -> nn.Module:
    """Load published (pretrained=True) or local (a path) weights into `model`, new classifier."""
    if pretrained is True:  # the zoo, torch.hub's cache, or a download into it
        pretrained = find_pretrained([name])[name]
    if pretrained:
        path = str(pretrained)
        _load_with_new_head(model, _state_dict_of(_torch_load(path, name), path), name, where=path)
    return model


def zoo_path(name: str) -> str:
    """weights/<name>.pt of the tiny preset's zoo, or an error that says how to make it."""
    path = os.path.join(ZOO_DIR, f"{name}.pt")
    if not os.path.exists(path):
        raise WeightsError(f"{name!r} has no published weights (the tiny variants are ours) and "
                           f"{path} is missing: make the zoo with `python pretrain.py`, train from "
                           f"scratch (train.py --teacher-init scratch --student-init scratch), or "
                           f"pass a checkpoint's path: pretrained='path/to/file.pt'")
    return path


def atomic_write(path: str, write) -> str:
    """write(tmp_path) fills a temporary file beside `path`, which then replaces `path` in one
    step (os.replace is atomic on one file system): a reader sees the old file or the new one."""
    tmp = f"{path}.tmp"
    write(tmp)
    os.replace(tmp, path)
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


def _published_hint(name: str) -> str:
    """' The published weights of NAME are FILE from URL.' for a model that has some, else ''."""
    try:
        file, url = published_file(name)
    except WeightsError:  # the tiny models and unknown names
        return ""
    return f" The published Kinetics-400 weights of {name!r} are {file} from {url}."


def _torch_load(path: str, name: str):
    """torch.load(path, weights_only=True), its refusals turned into errors that say what to do."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise WeightsError(
            f"{path}: torch.load(weights_only=True) refused this file ({str(e)[:200]}...). Either "
            f"it is not a PyTorch checkpoint (an HTML error page saved by a failed download?), or "
            f"it holds Python objects besides tensors, and unpickling those can run arbitrary code. "
            f"If you trust the file, save just its weights once: python -c \"import torch; "
            f"c = torch.load('FILE', weights_only=False); "
            f"torch.save(c.get('model_state', c), 'weights.pt')\" and use weights.pt in its "
            f"place, under the same file name.{_published_hint(name)}") from None
    except RuntimeError as e:  # e.g. a zip archive cut short by an interrupted download or copy
        raise WeightsError(f"{path} is not a readable PyTorch checkpoint ({str(e)[:200]}...): an "
                           f"incomplete download or copy? Fetch it again.{_published_hint(name)}") from None


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
        raise WeightsError(f"{where}: expected a state dict (names -> tensors), or a dict holding "
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
        raise WeightsError(f"{where} does not fit {name!r}: shapes differ outside the classifier "
                           f"({'; '.join(not_head[:3])}). Is it a checkpoint of another model?"
                           f"{_published_hint(name)}")
    dropped = {k: state.pop(k) for k in mismatched}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k not in dropped]
    if missing or result.unexpected_keys:
        raise WeightsError(f"{where} does not fit {name!r}: missing {missing[:5]}, unexpected "
                           f"{result.unexpected_keys[:5]}. Is it a checkpoint of another model?"
                           f"{_published_hint(name)}")
    msg = f"[models] {name}: loaded {len(state)} tensors from {where}"
    if dropped:
        # Expected when fine-tuning (e.g. 400 Kinetics classes -> 51 HMDB51 classes): the new
        # classifier keeps its fresh initialization.
        shapes = ", ".join(f"{k} {tuple(v.shape)} -> {tuple(own[k].shape)}"
                           for k, v in dropped.items())
        msg += f"; new classifier, dropped {shapes}"
    print(msg)


