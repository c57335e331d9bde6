"""Sparse autoencoders: saeembed's canonical `SAE` and loaders for the formats people publish."""

from saeembed.sae.formats import check_sae_fits, detect_format, load_sae
from saeembed.sae.model import SAE, SAEConfig, SparseActivations

__all__ = ["SAE", "SAEConfig", "SparseActivations", "check_sae_fits", "detect_format", "load_sae"]
