"""checkpoints.py: local checkpoints load with a new head, wrong ones are refused, an impossible
download says what to do; offline, the published files are found in --pretrained-dir, a missing
one is named with every other, and train.py --check-weights says so before any data is read."""
import functools
import http.server
import os
import subprocess
import sys
import threading
import urllib.error

import pytest
import torch

import checkpoints
import models
import plumbing
import train
from features import tap_points
from helpers import randomize_

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = [models.PRESETS["paper"][role] for role in plumbing.ROLES]  # mvit_v2_s, x3d_m, x3d_s


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


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No network and an empty torch.hub cache (a file cached on this machine must not hide a
    missing one) -> the list of URLs a download was tried for."""
    tried = []

    def no_network(url, *args, **kwargs):
        tried.append(url)
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tried


@pytest.mark.parametrize("name,url_part", [("x3d_s", "pytorchvideo/model_zoo/kinetics/X3D_S.pyth"),
                                           ("mc3_18", "download.pytorch.org/models/mc3_18")])
def test_impossible_download_names_the_url_and_the_local_file_alternative(name, url_part, offline):
    with pytest.raises(checkpoints.WeightsError) as err:
        models.build_model(name, 51, pretrained=True)
    msg = str(err.value)
    assert url_part in msg and "pretrained='path/to/" in msg and "URLError" in msg


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Fake "published" Kinetics-400 files of the paper preset, written once: our own models with
    400 classes, saved in the real files' layouts (torchvision: a plain state dict; pytorchvideo's
    X3D: {"model_state": ...}) under the published file names -> (folder, {name: state dict})."""
    folder, states = tmp_path_factory.mktemp("published"), {}
    for seed, name in enumerate(PAPER):
        torch.manual_seed(seed)  # X3D-M and X3D-S are one network: different weights tell them apart
        states[name] = models.build_model(name, 400).state_dict()
        file, _ = checkpoints.published_file(name)
        torch.save(states[name] if name.startswith("mvit") else {"model_state": states[name],
                                                                 "epoch": 300}, folder / file)
    return folder, states


def test_pretrained_dir_is_searched_by_the_published_file_names(published, offline):
    folder, _ = published
    found = checkpoints.find_pretrained(PAPER, str(folder), dir_flag="--pretrained-dir")
    assert found == {name: str(folder / checkpoints.published_file(name)[0]) for name in PAPER}
    assert offline == []  # nothing downloaded


def test_the_run_starts_from_the_files_in_pretrained_dir(published, offline):
    folder, states = published
    args = train.get_args_parser().parse_args(["--preset", "paper", "--pretrained-dir", str(folder),
                                               "--student-init", "pretrained"])
    weights = plumbing.pretrained_weights(args)  # what train.main builds every model with
    assert weights == {role: str(folder / checkpoints.published_file(name)[0])
                       for role, name in zip(plumbing.ROLES, PAPER)}
    student = models.build_model("x3d_s", 51, pretrained=weights["student"])
    head = tap_points(student).classifier + "."
    for k, v in student.state_dict().items():
        if not k.startswith(head):
            torch.testing.assert_close(v, states["x3d_s"][k])  # X3D_S.pyth, not X3D_M.pyth


def test_missing_files_are_named_all_at_once_with_their_urls_and_the_flag(published, offline,
                                                                          tmp_path):
    # One of the three files copied: the message lists the other two, and only them.
    folder, _ = published
    partial = tmp_path / "partial"
    partial.mkdir()
    mvit_file = checkpoints.published_file("mvit_v2_s")[0]
    os.symlink(folder / mvit_file, partial / mvit_file)
    with pytest.raises(checkpoints.WeightsError) as err:
        train.main(["--preset", "paper", "--student-init", "pretrained", "--check-weights",
                    "--pretrained-dir", str(partial)])
    msg = str(err.value)
    for name in ("x3d_m", "x3d_s"):
        file, url = checkpoints.published_file(name)
        assert file in msg and url in msg
    assert mvit_file not in msg and "--pretrained-dir FOLDER" in msg and str(partial) in msg
    assert "pretrained=" not in msg  # a command-line user is not told to call Python


def test_a_download_lands_in_torch_hubs_cache_and_is_found_there_offline(tmp_path, monkeypatch):
    # A local web server stands in for pytorchvideo's model zoo.
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    (tmp_path / "zoo").mkdir()
    state = models.build_model("x3d_s", 400).state_dict()
    torch.save({"model_state": state}, tmp_path / "zoo" / "X3D_S.pyth")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "zoo"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setitem(checkpoints._X3D_URLS, "x3d_s", f"http://127.0.0.1:{server.server_port}/X3D_S.pyth")
    try:
        cached = checkpoints.find_pretrained(["x3d_s"])["x3d_s"]
    finally:
        server.shutdown()
        server.server_close()
    assert cached == os.path.join(torch.hub.get_dir(), "checkpoints", "X3D_S.pyth")
    model = models.build_model("x3d_s", 51, pretrained=True)  # the server is gone: the cache serves
    torch.testing.assert_close(model.state_dict()["blocks.0.conv.conv_t.weight"],
                               state["blocks.0.conv.conv_t.weight"])


def test_a_scratch_student_needs_no_file_but_the_message_names_its_file_for_later(offline):
    with pytest.raises(checkpoints.WeightsError) as err:
        train.main(["--preset", "paper", "--check-weights"])  # the default --student-init scratch
    msg = str(err.value)
    needed, later = msg.split("--student-init pretrained would also need")
    assert "X3D_M.pyth" in needed and "mvit_v2_s-ae3be167.pth" in needed and "X3D_S.pyth" not in needed
    assert checkpoints.published_file("x3d_s")[1] in later
    assert len(offline) == 2  # no download tried for a model that starts from random weights


def test_a_wrong_file_under_a_published_name_is_refused_naming_what_differs(tmp_path):
    path = tmp_path / "X3D_S.pyth"
    torch.save({"model_state": models.build_model("x3d_m_tiny", 400).state_dict()}, path)
    with pytest.raises(checkpoints.WeightsError, match="another model") as err:
        models.build_model("x3d_s", 51, pretrained=str(path))
    msg = str(err.value)
    assert "shapes differ" in msg and checkpoints.published_file("x3d_s")[1] in msg


def test_a_truncated_download_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "X3D_M.pyth"
    torch.save({"model_state": models.build_model("x3d_m_tiny", 9).state_dict()}, path)
    path.write_bytes(path.read_bytes()[:1000])  # an interrupted copy
    with pytest.raises(checkpoints.WeightsError, match="incomplete download or copy"):
        models.build_model("x3d_m", 51, pretrained=str(path))


def test_check_weights_of_the_tiny_preset_reads_the_zoo_and_touches_no_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/ here: reading any would fail
    rows = train.main(["--check-weights", "--student-init", "pretrained"])["weights"]
    assert [rows[role]["model"] for role in plumbing.ROLES] == [models.PRESETS["tiny"][r] for r in plumbing.ROLES]
    assert all(checkpoints.ZOO_DIR in row["weights"] and row["params"] > 0 for row in rows.values())
    assert os.listdir(tmp_path) == []  # no data, no config.json, no run folder


def test_check_weights_on_the_command_line_exits_0_with_the_files_and_1_without(published, tmp_path):
    folder, _ = published
    # A separate process cannot be monkeypatched: a proxy on a closed local port makes every
    # download fail at once, as on a machine without internet; an empty torch.hub cache.
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch_home"), "OMP_NUM_THREADS": "1",
           "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "",
           "NO_PROXY": ""}
    cmd = [sys.executable, "train.py", "--preset", "paper", "--student-init", "pretrained",
           "--check-weights"]
    found = subprocess.run(cmd + ["--pretrained-dir", str(folder)], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert found.returncode == 0, found.stderr
    for name in PAPER:
        assert str(folder / checkpoints.published_file(name)[0]) in found.stdout
    assert "the run can start" in found.stdout
    missing = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    for name in PAPER:
        assert checkpoints.published_file(name)[1] in missing.stderr
    assert "--pretrained-dir FOLDER" in missing.stderr


def test_tiny_models_have_no_published_weights(tmp_path, monkeypatch):
    # pretrained=True reads the repo's own zoo for them; without it, the error says what to do.
    monkeypatch.setattr(checkpoints, "ZOO_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="no published weights") as err:
        models.build_model("x3d_s_tiny", 9, pretrained=True)
    assert "python pretrain.py" in str(err.value) and "--teacher-init scratch" in str(err.value)


def test_atomic_write_leaves_the_old_file_whole_when_the_writer_fails(tmp_path):
    path = tmp_path / "table.md"
    path.write_text("old")

    def fails(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise KeyboardInterrupt  # an interruption in the middle of writing

    with pytest.raises(KeyboardInterrupt):
        checkpoints.atomic_write(str(path), fails)
    assert path.read_text() == "old"
    checkpoints.atomic_write(str(path), lambda tmp: open(tmp, "w").write("new"))
    assert path.read_text() == "new" and not (tmp_path / "table.md.tmp").exists()
