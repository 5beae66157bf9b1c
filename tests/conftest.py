"""Shared pytest setup: make the flat project importable and keep CPU tests deterministic."""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
torch.manual_seed(0)
