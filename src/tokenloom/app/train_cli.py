"""`tokenloom train ...`: teacher-forced training from scratch or from a pretrained model."""


def train_command() -> None:
    """Train a model with teacher forcing."""
    raise SystemExit(2)
