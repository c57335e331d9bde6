"""Training saeembed's own SAEs: collect a reader's residual stream to disk
(`collect_activations`), train a TopK or BatchTopK SAE on it (`train_sae`), and measure it on
held-out data (`evaluate_sae`)."""

from saeembed.train.activations import (
    TextSource,
    collect_activations,
    load_manifest,
    save_activations,
)
from saeembed.train.evaluate import activation_metrics, evaluate_sae, loss_recovered
from saeembed.train.loader import ActivationLoader, iter_split
from saeembed.train.trainer import TrainConfig, TrainResult, train_sae

__all__ = [
    "ActivationLoader",
    "TextSource",
    "TrainConfig",
    "TrainResult",
    "activation_metrics",
    "collect_activations",
    "evaluate_sae",
    "iter_split",
    "load_manifest",
    "loss_recovered",
    "save_activations",
    "train_sae",
]
