"""export.py: the deployable student alone (no SDD head, no teacher) in one file that computes what
PyTorch computes on real clips, with the interface the README documents; a file that does not
is never written.

The ONNX tests need onnx, onnxscript and onnxruntime (requirements-export.txt, which
requirements-test.txt includes); they are skipped where those are missing.
"""
import json
import tempfile

import pytest
import torch

import deploy
import export
import models
import train
from features import feature_dims
from sdd import SDDHead

TRAINING_ONLY = ("sdd", "sdb", "phi", "non_local", "nonlocal", "teacher", "tap.")


def student_keys():
    return set(models.build_model("x3d_s_tiny", 9).state_dict())


def test_student_pt_holds_exactly_the_plain_students_tensors(student_run):
    state = torch.load(student_run / "student.pt", weights_only=True)
    assert set(state) == student_keys()
    assert not [k for k in state if any(word in k.lower() for word in TRAINING_ONLY)]
    # Positive control: the module train.py trains does hold the SDD head, under "sdd."
    student = models.build_model("x3d_s_tiny", 9)
    spec = models.input_spec("x3d_s_tiny")
    c = {n: feature_dims(models.build_model(n, 9), models.input_spec(n))["map"]  # teachers' map channels
         for n in ("mvit_tiny", "x3d_m_tiny")}
    net = train.Distiller(student, SDDHead(feature_dims(student, spec)["map"], c["mvit_tiny"], c["x3d_m_tiny"]))
    trained = set(net.state_dict())
    assert any(k.startswith("sdd.sdb.") for k in trained) and any(k.startswith("sdd.phi_vit.") for k in trained)
    assert {k[len("tap.model."):] for k in trained if k.startswith("tap.model.")} == set(state)


@pytest.fixture(scope="module")
def onnx_export(probe_student, tmp_path_factory):
    """export.py --format onnx --dynamic-batch on a student whose logits are of unit scale."""
    for package in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(package)
    out = tmp_path_factory.mktemp("onnx") / "student.onnx"
    return export.main([str(probe_student), "--dynamic-batch", "--out", str(out)])


def test_onnx_export_computes_pytorchs_logits_on_real_clips(onnx_export, probe_student):
    result = onnx_export
    assert result["ok"] and result["check"]["worst_excess"] <= 0
    assert result["check"]["max_abs_diff"] < 1e-4 and result["check"]["clips"] == 16  # 4 videos x 2 x 2 views
    assert result["check"]["top1_agree"] == result["check"]["top1_checked"] >= 16  # batch 1 and 16
    # Independently of export.main's own check: a batch of 3 other real clips through ONNX Runtime.
    model, info, _ = deploy.load_student(str(probe_student))
    import onnxruntime
    session = onnxruntime.InferenceSession(result["path"], providers=["CPUExecutionProvider"])
    with tempfile.TemporaryDirectory() as folder:
        clips = export.real_clips(export.check_videos(folder, info, n=2), info)[:3]  # (3, 3, 8, 32, 32)
    z_onnx = torch.from_numpy(session.run(None, {"clip": clips.numpy()})[0])
    with torch.no_grad():
        z_torch = deploy.classifier_of(model, info)(clips)
    assert z_torch.abs().max() > 0.5  # logits of unit scale: the comparison means something
    assert torch.allclose(z_onnx, z_torch, atol=1e-4, rtol=1e-4)


def test_onnx_file_has_the_documented_interface_and_carries_student_json(onnx_export, probe_student):
    import onnx
    model = onnx.load(onnx_export["path"])
    (clip,), (logits,) = model.graph.input, model.graph.output
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
    assert clip.name == "clip" and clip.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert dims(clip) == ["batch", 3, 8, 32, 32]
    assert logits.name == "logits" and logits.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert dims(logits)[1] == 9
    meta = {p.key: p.value for p in model.metadata_props}
    info = json.load(open(probe_student / "student.json"))
    assert json.loads(meta["student.json"]) == info and json.loads(meta["classes"]) == info["classes"]
    assert not any(n.metadata_props for n in model.graph.node)  # no stack traces with local paths


def test_onnx_file_holds_no_training_only_tensor_or_node(onnx_export):
    import onnx
    from onnx import numpy_helper
    model = onnx.load(onnx_export["path"])
    names = [i.name for i in model.graph.initializer] + [n.name for n in model.graph.node]
    names += [n.op_type for n in model.graph.node] + [o for n in model.graph.node for o in n.output]
    assert not [n for n in names if any(word in n.lower() for word in TRAINING_ONLY)]
    # Every stored tensor is one of the student's (a BatchNorm folded into the conv before it
    # gives that conv a "<weight>_bias"), or one of the few constants of adapt_input and reshapes.
    keys = {f"model.{k}" for k in student_keys()}
    other = [i for i in model.graph.initializer if i.name.removesuffix("_bias") not in keys]
    assert sum(numpy_helper.to_array(i).size for i in other) < 64, [i.name for i in other]


def test_a_fixed_batch_onnx_export_has_that_batch(probe_student, tmp_path):
    for package in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(package)
    import onnx
    result = export.main([str(probe_student), "--batch", "3", "--out", str(tmp_path / "b3.onnx")])
    assert result["ok"]
    dims = [d.dim_value for d in onnx.load(result["path"]).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [3, 3, 8, 32, 32]


@pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:FutureWarning")  # the guide says why
def test_torchscript_export_computes_pytorchs_logits_and_carries_student_json(probe_student, tmp_path):
    result = export.main([str(probe_student), "--format", "torchscript", "--out", str(tmp_path / "s.pt")])
    assert result["ok"] and result["check"]["max_abs_diff"] < 1e-4
    extra = {"student.json": ""}
    module = torch.jit.load(result["path"], _extra_files=extra)
    info = json.load(open(probe_student / "student.json"))
    assert json.loads(extra["student.json"])["classes"] == info["classes"]
    assert not [k for k in module.state_dict() if any(w in k.lower() for w in TRAINING_ONLY)]
    assert {k.removeprefix("model.") for k in module.state_dict()} == student_keys()


def test_an_export_that_fails_its_check_writes_nothing(probe_student, tmp_path, monkeypatch):
    real = export.load_runner
    monkeypatch.setattr(export, "load_runner", lambda *a: (lambda clip, run=real(*a): run(clip) + 1e-2))
    out = tmp_path / "s.pt"
    with pytest.raises(SystemExit, match="does not compute what PyTorch computes"):
        export.main([str(probe_student), "--format", "torchscript", "--out", str(out)])
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary
