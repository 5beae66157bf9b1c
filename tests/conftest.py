"""Shared pytest setup: make the flat project importable and keep CPU tests deterministic."""
import os
import sys

import torch

# Fixtures that build test media (videos, split layouts, small datasets) live in tests/media.py.
pytest_plugins = ["media"]

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
torch.manual_seed(0)
# One thread: the tests' tensors are tiny, and several processes (DataLoader workers, the 2-process
# DDP run) share the cores; oversubscribed OpenMP threads spin and make every op ~30x slower.
torch.set_num_threads(1)
