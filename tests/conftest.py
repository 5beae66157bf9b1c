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
                          "--eval-clips", "2", "--epochs", "2", "--teacher-epochs", "1",
                          "--vit-teacher-epochs", "1", "--dry-run"])
    return run, results, diagnostics.main([str(run), "--workers", "0", "--device", "cpu"])
