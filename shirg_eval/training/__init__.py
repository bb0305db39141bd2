"""LoRA training of LaViDa with a SHIRG visual path (DeepSpeed ZeRO + PEFT); entry script: ``train/lora.py``.

Heavy imports (DeepSpeed, PEFT) happen inside the functions, so importing this package stays cheap.
"""

from .config import ConfigError, TrainConfig, load_config

__all__ = ["ConfigError", "TrainConfig", "load_config", "load_adapter", "train", "main"]


def load_adapter(model, path, variant=None, merge=True, allow_base_mismatch=False):
    """See :func:`shirg_eval.model.adapters.load_adapter`."""
    from ..model.adapters import load_adapter as _load

    return _load(model, path, variant=variant, merge=merge, allow_base_mismatch=allow_base_mismatch)


def train(cfg):
    """See :func:`shirg_eval.training.trainer.train`."""
    from .trainer import train as _train

    return _train(cfg)


def main(argv=None):
    """See :func:`shirg_eval.training.trainer.main`."""
    from .trainer import main as _main

    return _main(argv)
