"""Shared pytest setup: make the flat project importable and keep CPU tests deterministic; the one
finished dry run that tests/test_diagnostics.py and tests/test_plot.py share."""
import os
import sys

import pytest
import torch

# Fixtures that build test media (videos, split layouts, small datasets) live in tests/media.py.
pytest_plugins = ["media"]

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
torch.manual_seed(0)
# One thread: the tests' tensors are tiny, and several processes (DataLoader workers, the 2-process
# DDP run) share the cores; oversubscribed OpenMP threads spin and make every op ~30x slower.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def diagnosed_run(tiny, tmp_path_factory):
    """A 2-epoch dry run of train.py on the tiny set, then diagnostics.py on it (done once for
    tests/test_diagnostics.py and tests/test_plot.py) -> (run folder, results, diagnostics)."""
    import diagnostics
    import train
    tmp = tmp_path_factory.mktemp("diagnosed")
    run = tmp / "run"
    results = train.main(["--data-root", tiny, "--out", str(run), "--cache-dir", str(tmp / "cache"),
                          "--synthetic-videos-per-class", "6", "--workers", "0", "--batch-size", "4",
                          "--eval-clips", "2", "--epochs", "2", "--cnn-teacher-epochs", "1",
                          "--vit-teacher-epochs", "1", "--dry-run"])
    return run, results, diagnostics.main([str(run), "--workers", "0", "--device", "cpu"])


@pytest.fixture(scope="session")
def student_run(tiny, tmp_path_factory):
    """A dry run of train.py on the tiny set, scored on 2 clips x 2 crops per video (so that
    predict.py's views are tested with several of each), shared by tests/test_predict.py and
    tests/test_export.py -> the run folder (student.pt, student.json, config.json, ...)."""
    import train
    tmp = tmp_path_factory.mktemp("student_run")
    train.main(["--data-root", tiny, "--out", str(tmp / "run"), "--cache-dir", str(tmp / "cache"),
                "--synthetic-videos-per-class", "6", "--workers", "0", "--batch-size", "4",
                "--eval-clips", "2", "--eval-crops", "2", "--epochs", "1", "--cnn-teacher-epochs", "1",
                "--vit-teacher-epochs", "1", "--dry-run"])
    return tmp / "run"


@pytest.fixture(scope="session")
def probe_student(student_run, tmp_path_factory):
    """The run's student.json beside a student.pt whose probabilities differ from video to video:
    the zoo's pretrained x3d_s_tiny (features that depend on the input) with a random classifier
    of unit-scale logits. After a dry run the student's logits differ by ~1e-3 (argmax could flip
    on rounding) and a fully random X3D gives every video the same answer, so neither could tell
    right views from wrong ones. -> its folder."""
    import shutil
    import models
    folder = tmp_path_factory.mktemp("probe_student")
    shutil.copy(student_run / "student.json", folder / "student.json")
    model = models.build_model("x3d_s_tiny", 9, pretrained=True)
    head = model.blocks[5].proj.weight  # (9, 128)
    with torch.no_grad():
        head.copy_(torch.randn(head.shape, generator=torch.Generator().manual_seed(0)) * 3 / head.shape[1] ** 0.5)
    torch.save(model.state_dict(), folder / "student.pt")
    return folder
