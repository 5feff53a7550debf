"""Small checkpoints the tests build instead of training one."""

from __future__ import annotations

from pathlib import Path

import torch

from ttsnn.sw.checkpoint import save_checkpoint
from ttsnn.sw.resnet import ms_resnet


def tiny_checkpoint(path: str | Path, mode: str, seed: int = 0) -> Path:
    """An untrained 'tiny' MS-ResNet (1 x 16 x 16 digits, T = 2, rank 4, 10 classes, threshold
    0.1 so that it spikes) in ``mode``, seeded, saved at ``path`` with the digits data set."""
    torch.manual_seed(seed)
    save_checkpoint(path, ms_resnet("tiny", mode, ranks=4, in_channels=1, num_classes=10, timesteps=2,
                                    input_size=16, v_threshold=0.1),
                    config={"dataset": "digits", "timesteps": 2})
    return Path(path)
