"""Training with teacher forcing: from scratch or from a pretrained model, one process or many.

    from tokenloom.training import build_config, train
    result = train(build_config("shakespeare-char-cpu", out="runs/baby", steps=500))
"""

from tokenloom.training.config import TrainConfig
from tokenloom.training.presets import DEFAULT_PRESET, PRESETS, build_config
from tokenloom.training.run import resume_config, train
from tokenloom.training.trainer import TrainResult, lr_at

__all__ = ["DEFAULT_PRESET", "PRESETS", "TrainConfig", "TrainResult", "build_config", "lr_at", "resume_config", "train"]
