"""SAEs shipped inside the package (`saeembed/pretrained/<name>/`, saeembed's own format), and
which one is the default `--sae` for a reader model."""

from __future__ import annotations

import json
from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parent


def shipped_saes() -> dict[str, Path]:
    """Name -> directory of each shipped SAE."""
    if not PRETRAINED_DIR.is_dir():
        return {}
    return {p.parent.name: p.parent for p in sorted(PRETRAINED_DIR.glob("*/cfg.json"))}


def default_sae_for(model_id: str) -> Path | None:
    """The shipped SAE trained on ``model_id``, if there is one (the first by name)."""
    for directory in shipped_saes().values():
        cfg = json.loads((directory / "cfg.json").read_text())
        if cfg.get("model") == model_id:
            return directory
    return None
