"""The LLM labeller and LLM detection scoring, over any OpenAI-compatible chat endpoint (OpenAI,
vLLM, Ollama, llama.cpp server...), with every response cached on disk.

Labelling shows the model a feature's top-activating labelling documents and documents sampled
across its activation quantiles, the peak token marked «like this», and asks for a short label.
Detection scoring shows the label with a shuffled mix of held-out documents where the feature is
strongly active (see `saeembed.labels.offline`) and where it is not active at all, and asks which ones carry the concept; the score is the balanced
accuracy of that answer (0.5 = chance). This follows the automated-interpretability practice of
explaining from activating examples and scoring explanations by how well they predict activity
(Bills et al. 2023; Paulo et al. 2024, arXiv:2410.13928)."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saeembed.errors import InputError, SaeembedError
from saeembed.files import atomic_path
from saeembed.home import cache_dir
from saeembed.labels.evidence import Evidence, balanced_accuracy, strong_threshold
from saeembed.labels.offline import FeatureLabel

log = logging.getLogger(__name__)

LABEL_SYSTEM = (
    "You name features of a sparse autoencoder trained on a language model. Each feature is "
    "active on some documents. In the examples, the token where the feature is strongest is "
    "marked «like this». Say what the feature responds to: a concept, topic, tone, word or "
    "pattern. Be specific and short."
)
LABEL_INSTRUCTIONS = (
    "Reply in exactly two lines:\nLABEL: <at most 8 words>\nDESCRIPTION: <one sentence>"
)
DETECT_SYSTEM = (
    "You check whether texts show a given property. Answer only with the numbers of the texts "
    "that show it."
)


class LLMError(SaeembedError):
    """The LLM endpoint failed or answered something unusable."""


@dataclass(frozen=True)
class LLMConfig:
    top_examples: int = 10
    quantile_examples: int = 10
    detect_positive: int = 10
    detect_negative: int = 10
    snippet_width: int = 90
    concurrency: int = 8
    seed: int = 0
    label_max_tokens: int = 200  # completion caps; part of the request, so of the cache key
    detect_max_tokens: int = 200


#: Longest wait honoured from a server's Retry-After header, in seconds.
MAX_RETRY_AFTER = 60.0


class ChatClient:
    """POST /chat/completions to an OpenAI-compatible server; responses cached by request hash
    under ``$SAEEMBED_HOME/llm-cache`` so reruns and resumed jobs cost nothing.

    HTTP 429 and 5xx answers, refused or dropped connections and timeouts are retried
    ``max_retries`` times, waiting 1, 2, 4... seconds or what the server's ``Retry-After`` asks
    (up to a minute). The timeout is long because a local server queues concurrent requests and
    answers them one after another: a request can wait for all the others, and one abandoned
    early would be generated twice (the server keeps working on it)."""

    def __init__(
        self,
        api_base: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 600.0,
        max_retries: int = 4,
        cache: Path | None = None,
    ):
        if not re.match(r"https?://", api_base):
            raise InputError(
                f"--api-base {api_base!r} is not a URL; give e.g. http://localhost:8000/v1"
            )
        self.api_base = api_base.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.cache = cache or cache_dir("llm-cache")

    def _key(self, payload: dict) -> str:
        blob = json.dumps({"api_base": self.api_base, **payload}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def complete(self, messages: list[dict], *, max_tokens: int = 200) -> str:
        payload = {
            "model": self.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": max_tokens,
        }
        key = self._key(payload)
        cached = self.cache / key[:2] / f"{key}.json"
        if cached.is_file():
            return json.loads(cached.read_text())["content"]
        content = self._post(payload)
        with atomic_path(cached) as tmp:
            tmp.write_text(json.dumps({"request": payload, "content": content}))
        return content

    def _post(self, payload: dict) -> str:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            f"{self.api_base}/chat/completions",
            data=json.dumps(payload).encode(),
            headers=headers,
            method="POST",
        )
        for attempt in range(self.max_retries + 1):
            wait = min(2**attempt, 30)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    body = json.loads(response.read())
                return body["choices"][0]["message"]["content"] or ""
            except urllib.error.HTTPError as exc:
                retry = exc.code == 429 or exc.code >= 500
                detail = exc.read()[:200].decode(errors="replace")
                if not retry or attempt == self.max_retries:
                    hint = " (check --api-key)" if exc.code in (401, 403) else ""
                    raise LLMError(
                        f"LLM endpoint {self.api_base} answered HTTP {exc.code}{hint}: {detail}"
                    ) from exc
                wait = retry_after(exc.headers.get("Retry-After"), wait)
                problem = f"HTTP {exc.code}"
            except (
                urllib.error.URLError,
                TimeoutError,
                ConnectionError,
                http.client.HTTPException,  # e.g. a server killed half-way through its answer
            ) as exc:
                if attempt == self.max_retries:
                    raise LLMError(
                        f"cannot reach LLM endpoint {self.api_base} ({exc}); is the server running?"
                    ) from exc
                problem = str(exc) or type(exc).__name__
            except (KeyError, IndexError, TypeError, json.JSONDecodeError) as exc:
                raise LLMError(
                    f"LLM endpoint {self.api_base} did not answer like an OpenAI chat completion"
                ) from exc
            log.warning(
                "LLM endpoint %s: %s; retry %d of %d in %.0f s",
                self.api_base,
                problem,
                attempt + 1,
                self.max_retries,
                wait,
            )
            time.sleep(wait)
        raise AssertionError("unreachable")


def retry_after(header: str | None, default: float) -> float:
    """Seconds to wait before a retry: the server's ``Retry-After`` (seconds, or an HTTP date)
    when it gives one, at most `MAX_RETRY_AFTER`; else ``default``."""
    if not header:
        return default
    try:
        seconds = float(header)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            seconds = parsedate_to_datetime(header).timestamp() - time.time()
        except (TypeError, ValueError):
            return default
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def quantile_rows(rows: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows spread over the activation quantiles (``rows`` sorted by value, descending):
    one drawn at random from each of ``n`` equal bins."""
    if len(rows) <= n:
        return rows
    edges = np.linspace(0, len(rows), n + 1).astype(int)
    return np.array(
        [rows[rng.integers(lo, hi)] for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    )


def label_prompt(evidence: Evidence, feature: int, config: LLMConfig) -> list[dict] | None:
    rows = np.arange(evidence.rows(feature).start, evidence.rows(feature).stop)
    rows = rows[~evidence.heldout[evidence.act_doc[rows]]]
    if len(rows) == 0:
        return None
    rng = np.random.default_rng([config.seed, feature])
    top = rows[: config.top_examples]
    rest = rows[config.top_examples :]
    spread = quantile_rows(rest, config.quantile_examples, rng) if len(rest) else rest
    lines = ["Top-activating examples:"]
    lines += [
        f"{i + 1}. {evidence.snippet(int(r), config.snippet_width)}" for i, r in enumerate(top)
    ]
    if len(spread):
        lines.append("\nExamples from across the feature's activation range (weaker):")
        lines += [
            f"{i + 1}. {evidence.snippet(int(r), config.snippet_width)}"
            for i, r in enumerate(spread)
        ]
    lines += ["", LABEL_INSTRUCTIONS]
    return [
        {"role": "system", "content": LABEL_SYSTEM},
        {"role": "user", "content": "\n".join(lines)},
    ]


#: A label is a short phrase; a longer "label" is a reply that ignored the instructions.
MAX_LABEL_CHARS = 120
MAX_DESCRIPTION_CHARS = 1000
#: Replies that decline instead of labelling ("I cannot help with that.")
REFUSAL = re.compile(
    r"^\W*(i\s*(cannot|can't|can not|am unable|'m unable|am not able|won't)|sorry|as an ai|"
    r"i'm sorry|unfortunately)\b",
    re.IGNORECASE,
)


def parse_label(reply: str) -> tuple[str, str | None]:
    """The label (and description) in an LLM's reply; `LLMError` for a reply that is no label:
    empty, a refusal, or far longer than a label."""
    label = description = None
    for line in reply.splitlines():
        key, _, value = line.partition(":")
        if key.strip().strip("*").upper() == "LABEL" and value.strip():
            label = value.strip().strip("*\"' ")
        elif key.strip().strip("*").upper() == "DESCRIPTION" and value.strip():
            description = value.strip()
    if label is None:  # a model that ignored the format: its first non-empty line
        first = next((x.strip() for x in reply.splitlines() if x.strip()), "")
        label = first.strip("*\"' ")
    if not label:
        raise LLMError("the LLM returned an empty label")
    if REFUSAL.match(label):
        raise LLMError(f"the LLM declined to label ({label[:60]!r})")
    if len(label) > MAX_LABEL_CHARS:
        raise LLMError(f"the LLM's label is {len(label):,} characters long, not a short phrase")
    if description is not None:
        description = description[:MAX_DESCRIPTION_CHARS]
    return label, description


def detection_items(
    evidence: Evidence, feature: int, config: LLMConfig
) -> tuple[list[int], np.ndarray] | None:
    """Held-out documents for detection: (doc positions, truth), shuffled; None if too few."""
    rng = np.random.default_rng([config.seed, feature, 1])
    rows = np.arange(evidence.rows(feature).start, evidence.rows(feature).stop)
    active_docs = evidence.act_doc[rows]
    strong = evidence.act_value[rows] >= strong_threshold(evidence.act_value[rows])
    held_rows = rows[evidence.heldout[active_docs] & strong]
    positives = evidence.act_doc[quantile_rows(held_rows, config.detect_positive, rng)]
    active = np.zeros(evidence.n_docs, dtype=np.bool_)
    active[active_docs] = True
    pool = np.flatnonzero(evidence.heldout & ~active)
    if len(positives) < 2 or len(pool) < 2:
        return None
    negatives = rng.choice(pool, min(config.detect_negative, len(pool)), replace=False)
    docs = np.concatenate([positives, negatives])
    truth = np.concatenate([np.ones(len(positives), bool), np.zeros(len(negatives), bool)])
    order = rng.permutation(len(docs))
    return [int(d) for d in docs[order]], truth[order]


def detect_prompt(evidence: Evidence, label: str, docs: list[int], width: int) -> list[dict]:
    lines = [f"Property: {label}", "", "Texts:"]
    for i, doc in enumerate(docs):
        text = " ".join(evidence.texts[doc].split())
        lines.append(f"{i + 1}. {text[: 2 * width]}{'…' if len(text) > 2 * width else ''}")
    lines += [
        "",
        "Which texts show the property? Reply with their numbers, comma-separated, or NONE.",
    ]
    return [
        {"role": "system", "content": DETECT_SYSTEM},
        {"role": "user", "content": "\n".join(lines)},
    ]


def parse_detection(reply: str, n: int) -> np.ndarray:
    picked = np.zeros(n, dtype=np.bool_)
    for number in re.findall(r"\d+", reply):
        if 1 <= int(number) <= n:
            picked[int(number) - 1] = True
    return picked


def detection_score(
    client: ChatClient, evidence: Evidence, feature: int, label: str, config: LLMConfig
) -> float | None:
    items = detection_items(evidence, feature, config)
    if items is None:
        return None
    docs, truth = items
    reply = client.complete(
        detect_prompt(evidence, label, docs, config.snippet_width),
        max_tokens=config.detect_max_tokens,
    )
    predicted = parse_detection(reply, len(docs))
    tp = int((predicted & truth).sum())
    fp = int((predicted & ~truth).sum())
    return balanced_accuracy(tp, fp, int(truth.sum()), int((~truth).sum()))


def llm_label_feature(
    client: ChatClient, evidence: Evidence, feature: int, config: LLMConfig, *, score: bool = True
) -> FeatureLabel | None:
    messages = label_prompt(evidence, feature, config)
    if messages is None:
        return None
    reply = client.complete(messages, max_tokens=config.label_max_tokens)
    try:
        label, description = parse_label(reply)
    except LLMError as exc:  # the reply is cached: failing here would fail every rerun too
        log.warning("feature %d left unlabelled: %s", feature, exc)
        return None
    rows = np.arange(evidence.rows(feature).start, evidence.rows(feature).stop)
    return FeatureLabel(
        feature=feature,
        label=label,
        description=description,
        score=detection_score(client, evidence, feature, label, config) if score else None,
        density=len(rows) / evidence.n_docs,
        n_docs=len(rows),
        examples=[evidence.snippet(int(r)) for r in rows[:5]],
    )


def label_with_llm(
    client: ChatClient,
    evidence: Evidence,
    features: list[int],
    config: LLMConfig | None = None,
    *,
    on_label=None,
    progress: bool = False,
) -> list[FeatureLabel]:
    """LLM labels for ``features``, ``config.concurrency`` requests in flight. ``on_label`` is
    called with each finished label (in feature order), so callers can save as they go."""
    from tqdm.auto import tqdm

    config = config or LLMConfig()
    done: list[FeatureLabel] = []

    def keep(result: FeatureLabel | None) -> None:
        if result is not None:
            done.append(result)
            if on_label is not None:
                on_label(result)

    pool = ThreadPoolExecutor(max_workers=config.concurrency)
    futures = [pool.submit(llm_label_feature, client, evidence, f, config) for f in features]
    try:
        for i, future in enumerate(
            tqdm(futures, desc="LLM labelling", unit="feature", disable=not progress)
        ):
            try:
                keep(future.result())
            except BaseException:
                # stop at once: nothing queued is sent, and what finished meanwhile is kept
                _stop(pool)
                for later in futures[i + 1 :]:
                    if not later.cancelled() and later.exception() is None:
                        keep(later.result())
                raise
    finally:
        pool.shutdown(wait=True)
    return done


def _stop(pool: ThreadPoolExecutor) -> None:
    """Cancel the queued requests and wait for those already sent (each ends by an answer or
    by running out of retries). Without this, a failed or interrupted run would go on sending
    every queued request first, and on a dead server wait out each one's retries."""
    pool.shutdown(wait=True, cancel_futures=True)


def score_labels_with_llm(
    client: ChatClient,
    evidence: Evidence,
    labels: dict[int, str],
    config: LLMConfig | None = None,
) -> dict[int, float | None]:
    """LLM detection scores for existing labels (e.g. offline or imported ones)."""
    config = config or LLMConfig()
    pool = ThreadPoolExecutor(max_workers=config.concurrency)
    futures: dict[int, Future] = {
        f: pool.submit(detection_score, client, evidence, f, label, config)
        for f, label in labels.items()
    }
    try:
        return {f: future.result() for f, future in futures.items()}
    except BaseException:
        _stop(pool)
        raise
    finally:
        pool.shutdown(wait=True)
