"""Readers for the SAE formats people publish, each converted into saeembed's canonical `SAE`.

Supported: saeembed's own directory (`cfg.json` + `sae.safetensors`), SAELens directories
(`cfg.json` + `sae_weights.safetensors`), EleutherAI sparsify hookpoint folders (`cfg.json` +
`sae.safetensors` with `encoder.weight`), and Goodfire `.pt`/`.pth` state dicts. See
docs/sae-format.md for what each conversion does.

Conversions are exact: encoders that subtract ``b_dec`` from the input have it folded into
``b_enc``, constant input scales go into ``cfg.input_scale``, and anything saeembed's encoder
cannot reproduce is refused with an `SAEError` instead of being approximated.

This module is the dispatcher: it resolves a spec (local path or Hub id), detects the format,
and reads saeembed's own directories. Each published format's converter has its own module
(`saeembed.sae.saelens`, `saeembed.sae.sparsify`, `saeembed.sae.goodfire`); the readers and
checks they share are in `saeembed.sae._common`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from saeembed.errors import SAEError
from saeembed.sae._common import TORCH_SUFFIXES, name_list, safetensors_keys, torch_files
from saeembed.sae.goodfire import load_goodfire
from saeembed.sae.model import CFG_FILE, SAE, WEIGHTS_FILE
from saeembed.sae.saelens import SAELENS_WEIGHTS, load_saelens
from saeembed.sae.sparsify import load_sparsify

FORMATS: tuple[str, ...] = ("saeembed", "saelens", "sparsify", "goodfire")

_HUB_PREFIX = "hf://"
TRAINED_SOURCE = "saeembed:trained"
_HUB_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_HUB_RE = re.compile(rf"^{_HUB_PART}/{_HUB_PART}(/[^\s\\]+)?$")


# ---- public API ---------------------------------------------------------------------------
def load_sae(spec: str | os.PathLike, *, sha256: str | None = None) -> SAE:
    """Load an SAE from a local directory or checkpoint file, or a Hub id
    ``owner/repo[/folder]`` (optionally prefixed with ``hf://``), in any supported format, or by
    the source an SAE records (``FORMAT:WHERE``, as a store's encoder keeps it; a shipped SAE's is
    ``saeembed:pretrained/NAME``). With ``sha256`` (an encoder's ``sae_sha256``), an SAE whose
    content hash differs (replaced or retrained since) is refused."""
    sae = _load(spec)
    if sha256 is not None and sae.content_hash() != sha256:
        raise SAEError(
            f"the SAE at {spec} is not the one with hash {sha256[:12]} (its weights changed "
            "since); point to the original SAE"
        )
    return sae


def _load(spec: str | os.PathLike) -> SAE:
    shipped = "saeembed:pretrained/"
    if str(spec).startswith(shipped):
        from saeembed.pretrained import shipped_saes

        name = str(spec)[len(shipped) :]
        if name not in shipped_saes():
            raise SAEError(f"no shipped SAE {name!r}; see `saeembed sae list`")
        spec = shipped_saes()[name]
    else:
        recorded_format, found, recorded_where = str(spec).partition(":")
        if found and recorded_format in FORMATS:
            spec = recorded_where
    path, where = _resolve(spec)
    path = _sae_root(path)
    fmt = detect_format(path)
    if fmt == "saeembed":
        sae = _load_saeembed(path)
        shipped_name = _shipped_name(path)
        if shipped_name is not None:
            # however it was reached (its name, the installed path), a shipped SAE is reloaded by
            # name: the installed path differs between machines and environments
            sae.cfg.source = f"{shipped}{shipped_name}"
        # a freshly trained SAE, or a converted copy, records only "saeembed:trained": loaded
        # from its directory, that directory is where it comes from (and where to reload it)
        elif sae.cfg.source in (None, TRAINED_SOURCE, f"saeembed:{path}"):
            sae.cfg.source = f"saeembed:{where}"
        return sae
    sae = _LOADERS[fmt](path)
    sae.cfg.source = f"{fmt}:{where}"
    return sae


def _shipped_name(path: Path) -> str | None:
    """The name of the shipped SAE whose directory ``path`` is, or None."""
    from saeembed.pretrained import shipped_saes

    path = path.resolve()
    return next((name for name, d in shipped_saes().items() if d.resolve() == path), None)


def detect_format(path: Path) -> str:
    """Name the on-disk format at ``path``: "saeembed", "saelens", "sparsify" or "goodfire"."""
    path = _sae_root(Path(path))
    if path.is_file():
        if path.suffix.lower() in TORCH_SUFFIXES:
            return "goodfire"
        raise SAEError(
            f"{path} is not an SAE checkpoint saeembed can read: give a directory with "
            f"cfg.json, or a Goodfire .pt/.pth file"
        )
    if not path.is_dir():
        raise SAEError(f"no SAE at {path}: it does not exist")
    has_cfg = (path / CFG_FILE).is_file()
    if has_cfg and (path / SAELENS_WEIGHTS).is_file():
        return "saelens"
    if has_cfg and (path / WEIGHTS_FILE).is_file():
        keys = safetensors_keys(path / WEIGHTS_FILE)
        if "W_enc" in keys:
            return "saeembed"
        if "encoder.weight" in keys:
            return "sparsify"
        raise SAEError(
            f"{path / WEIGHTS_FILE} has neither saeembed tensors (W_enc, ...) nor sparsify "
            f"tensors (encoder.weight, ...); found: {name_list(keys)}"
        )
    checkpoints = torch_files(path)
    if not has_cfg and len(checkpoints) == 1:
        return "goodfire"
    if len(checkpoints) > 1:
        raise SAEError(
            f"{path} holds several checkpoints ({name_list(p.name for p in checkpoints)}); "
            f"give the path of the one to use"
        )
    if has_cfg:
        raise SAEError(
            f"{path} has cfg.json but no weights: expected {WEIGHTS_FILE} (saeembed or "
            f"sparsify) or {SAELENS_WEIGHTS} (SAELens) next to it"
        )
    children = sorted(c.name for c in path.iterdir() if c.is_dir() and (c / CFG_FILE).is_file())
    if children:
        raise SAEError(
            f"{path} holds several SAEs ({name_list(children)}); pick one, e.g. {path / children[0]}"
        )
    raise SAEError(
        f"no SAE found in {path}: expected cfg.json with sae.safetensors or "
        f"sae_weights.safetensors, or a single .pt/.pth checkpoint"
    )


def check_sae_fits(sae: SAE, width: int, n_layers: int, layer: int) -> None:
    """Raise `SAEError` unless ``sae`` can read its site (`saeembed.sites`) of block ``layer``
    in a model where that site is ``width`` wide and which has ``n_layers`` decoder blocks."""
    if sae.cfg.d_in != width:
        what = "hidden size" if sae.cfg.site != "mlp_hidden" else "MLP width"
        raise SAEError(
            f"SAE d_in={sae.cfg.d_in} does not match the model's {what} {width} at "
            f"layer {layer}; pick an SAE trained on this model"
        )
    if not 0 <= layer < n_layers:
        raise SAEError(
            f"layer {layer} is outside 0..{n_layers - 1}: the model has {n_layers} decoder blocks"
        )


# ---- resolving a spec -----------------------------------------------------------------------
def _resolve(spec: str | os.PathLike) -> tuple[Path, str]:
    """Turn ``spec`` into a local path (downloading from the Hub when needed) and a label."""
    text = os.fspath(spec)
    if isinstance(spec, str) and text.startswith(_HUB_PREFIX):
        return _from_hub(text[len(_HUB_PREFIX) :])
    path = Path(text).expanduser()
    if path.exists():
        return path, str(path)
    if isinstance(spec, str) and _looks_like_hub_id(text):
        return _from_hub(text, missing_path=text)
    raise SAEError(
        f"no SAE at {text}: give a directory, a checkpoint file, or a Hub id owner/repo[/folder]"
    )


def _looks_like_hub_id(text: str) -> bool:
    if text.startswith(("/", ".", "~")) or "//" in text:
        return False
    if any(part in ("", ".", "..") for part in text.split("/")):
        return False
    return bool(_HUB_RE.match(text))


def _snapshot_download(repo_id: str, **kwargs) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id, **kwargs)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _from_hub(ref: str, missing_path: str | None = None) -> tuple[Path, str]:
    """Download ``ref`` (owner/repo[/folder]); ``missing_path`` when it was given without hf://
    and could have been meant as that relative path (none exists), which the error then says."""
    parts = [p for p in ref.strip("/").split("/") if p]
    if len(parts) < 2:
        raise SAEError(f"{ref!r} is not a Hub id: use owner/repo or owner/repo/folder")
    repo_id, sub = "/".join(parts[:2]), "/".join(parts[2:])
    label = f"{_HUB_PREFIX}{repo_id}" + (f"/{sub}" if sub else "")
    try:
        root = _snapshot_download(
            repo_id,
            allow_patterns=[sub, f"{sub}/*"] if sub else None,
            # read at call time, so that setting it after import still works
            local_files_only=_env_flag("HF_HUB_OFFLINE"),
        )
    except Exception as exc:  # huggingface_hub raises many types; all become one message
        raise _hub_error(repo_id, label, exc, missing_path) from exc
    target = Path(root) / sub if sub else Path(root)
    if not target.exists():
        raise SAEError(f"Hub repo {repo_id} has no {sub!r}; check the folder name on its page")
    return target, label


def _hub_error(repo_id: str, label: str, exc: Exception, missing_path: str | None) -> SAEError:
    kinds = {cls.__name__ for cls in type(exc).__mro__}
    local = "give a local directory or checkpoint path instead"
    if missing_path is not None:
        local = f"there is no local path {missing_path} either: check it, or {local}"
    if "GatedRepoError" in kinds:
        why = f"Hub repo {repo_id} is gated: accept its terms on the Hub and set HF_TOKEN"
    elif "RepositoryNotFoundError" in kinds:
        why = (
            f"Hub repo {repo_id} was not found (private repos need HF_TOKEN); if {label} was "
            f"meant as a local path, it does not exist"
        )
    elif "RevisionNotFoundError" in kinds:
        why = f"Hub repo {repo_id} has no such revision"
    elif "HFValidationError" in kinds:
        why = f"{label} is not a valid Hub id (owner/repo[/folder])"
    elif kinds & {"LocalEntryNotFoundError", "OfflineModeIsEnabled"} or _is_network_error(exc):
        offline = " (HF_HUB_OFFLINE is set)" if _env_flag("HF_HUB_OFFLINE") else ""
        why = (
            f"the Hugging Face Hub could not be reached for {label}{offline} and it is not "
            f"in the local cache; {local}"
        )
        return SAEError(why)
    else:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        why = (
            f"could not download {label} from the Hugging Face Hub ({type(exc).__name__}: {detail})"
        )
    return SAEError(f"{why}; {local}")


def _is_network_error(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(
        names
        & {
            "ConnectionError",
            "ConnectError",
            "Timeout",
            "TimeoutException",
            "NetworkError",
            "ProxyError",
            "SSLError",
        }
    )


def _sae_root(path: Path) -> Path:
    """A file inside an SAE directory (cfg.json, the weights) stands for the directory."""
    if path.is_file() and path.name in (CFG_FILE, WEIGHTS_FILE, SAELENS_WEIGHTS):
        return path.parent
    return path


# ---- saeembed's own format ----------------------------------------------------------------
def _load_saeembed(directory: Path) -> SAE:
    try:
        return SAE.load(directory)
    except SAEError:
        raise
    except (TypeError, ValueError, OSError) as exc:
        raise SAEError(f"{directory} is not a valid saeembed SAE ({exc})") from exc
    except Exception as exc:  # safetensors errors
        raise SAEError(f"{directory / WEIGHTS_FILE} is not readable ({exc})") from exc


_LOADERS: dict[str, Callable[[Path], SAE]] = {
    "saeembed": _load_saeembed,
    "saelens": load_saelens,
    "sparsify": load_sparsify,
    "goodfire": load_goodfire,
}
