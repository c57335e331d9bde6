"""How documents are read, in one place: `EncodingOptions` holds the reader, the SAE, the layer,
truncation, batching, device, precision and chat wrapping that `encode`, `prefs encode` and a
diff's encoding on the way share, each with its default and the help the command line shows
(`saeembed.cli.options.encoding_options` makes the options from it). Light: no torch here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from saeembed.errors import InputError

DEFAULT_MAX_TOKENS = 512
CHAT_TURNS = ("none", "user", "assistant")


def _help(text: str):
    return {"help": text}


@dataclass(frozen=True)
class EncodingOptions:
    """The options of one encoding; `check` refuses bad values before anything is loaded."""

    model: str = field(default="default", metadata=_help(
        "Reader LLM: Hub id (owner/name[@revision]), local path, or `default` "
        "(SmolLM2-135M-Instruct)."))  # fmt: skip
    sae: str | Path | None = field(default=None, metadata=_help(
        "SAE: directory, checkpoint file or Hub id (saeembed, SAELens, sparsify, Goodfire) "
        "[default: the one shipped for the model]."))  # fmt: skip
    layer: int | None = field(default=None, metadata=_help(
        "Residual stream after this decoder block (0-based) [default: the SAE's]."))  # fmt: skip
    max_tokens: int | None = field(default=None, metadata=_help(
        f"Keep the first N tokens of each document (longer ones are truncated and counted) "
        f"[default: {DEFAULT_MAX_TOKENS}]."))  # fmt: skip
    batch_tokens: int | None = field(default=None, metadata=_help(
        "Token budget per batch [default: 1024 on CPU, 65536 on CUDA]."))  # fmt: skip
    device: str = field(default="auto", metadata=_help("auto, cuda, mps or cpu."))
    dtype: str = field(default="auto", metadata=_help(
        "auto (the precision a store's encoders already use; else bf16 on a GPU or on a CPU "
        "that multiplies bf16 natively, fp32 elsewhere), float32, bfloat16, float16."))  # fmt: skip
    chat: str = field(default="none", metadata=_help(
        "Wrap each document in the model's chat template as this turn (scaffolding is not "
        "pooled)."))  # fmt: skip

    def check(self) -> EncodingOptions:
        """Itself, or an `InputError` naming the bad value and the fix."""
        if self.batch_tokens is not None and self.batch_tokens < 1:
            raise InputError(f"--batch-tokens must be at least 1 (got {self.batch_tokens})")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise InputError(f"--max-tokens must be at least 1 (got {self.max_tokens})")
        if self.chat not in CHAT_TURNS:
            raise InputError(f"unknown chat turn {self.chat!r}; use one of {', '.join(CHAT_TURNS)}")
        return self

    def but(self, **changes) -> EncodingOptions:
        """A copy with ``changes``, checked."""
        return replace(self, **changes).check()

    def kwargs(self, *names: str) -> dict:
        """The options as keyword arguments (only ``names``, when given)."""
        values = asdict(self)
        return {k: values[k] for k in names} if names else values

    @staticmethod
    def names() -> tuple[str, ...]:
        return tuple(f.name for f in fields(EncodingOptions))

    @staticmethod
    def help(name: str) -> str:
        return next(f.metadata["help"] for f in fields(EncodingOptions) if f.name == name)
