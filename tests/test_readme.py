"""Every command and code block in README.md runs, as written, on the real default model.

The README is read block by block, in order: each `saeembed` line of a ```bash block (and each
`$ saeembed` line of an output block) runs through the CLI in a sandbox folder, each ```python
block is executed there, the ```sql block runs on the store its section made. They run on what
a newcomer has after `make demo` (whose script, examples/demo.sh, runs first, on 40 snippets
per side) plus the small files a section names (`a.jsonl`, `reviews.jsonl`, `books.jsonl`, ...:
real documents from the named datasets, written by `sandbox`).

What the runner changes in a command, each for a stated reason (`SUBSTITUTIONS`): named
datasets are sampled to 20 rows (`#20`), so the whole README runs in minutes; Hub ids and the
LLM server's address point at local equivalents (no network here); the Ray cluster is a local
one; `sae train` runs 20 steps. Commands shown failing in the README must fail with exactly the
error it shows; every other command must succeed with output on stdout or stderr.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import polars as pl
import pytest
from click.testing import CliRunner

from tests.fakes import send_json

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SAMPLE_ROWS = 20
DEMO_DOCS = 40

# (pattern, replacement, why): applied to every README command before it runs.
SUBSTITUTIONS = [
    (r"(data:[\w-]+(?:\?[^\s\"'#]*)?)(?:#\d+)?", rf"\1#{SAMPLE_ROWS}",
     "named datasets: a 20-row sample, so the README runs in minutes"),
    (r"(data get \"?[\w-]+(?:\?[^\s\"'#]*)?)(?:#\d+)?", rf"\1#{SAMPLE_ROWS}",
     "data get: the same sample"),
    (r"EleutherAI/sae-pythia-70m-32k/layers\.3", "{sparsify_sae}",
     "a Hub id: no network here, a local folder in the same (sparsify) format"),
    (r"path/to/saelens-sae", "{saelens_sae}", "a local SAELens folder"),
    (r"http://localhost:8000/v1", "{llm_url}", "a local OpenAI-compatible server"),
    (r"--workers 8\s+--gpus-per-worker 1 --address auto", "--workers 1 --gpus-per-worker 0",
     "a local Ray cluster on this machine's CPUs"),
    (r"^(saeembed sae train .*)$", r"\1 --steps 20 --batch-size 256 --d-sae 512",
     "a short training run"),
]  # fmt: skip
# Commands not run here, and why: they are this test suite itself or its setup.
NOT_RUN = {"make demo": "run as examples/demo.sh, first", "make test": "this suite"}


def review_queue(folder: Path) -> None:
    """What a person does between `prefs flag --queue` and `prefs apply`: decide each flagged
    pair (here: keep every label)."""
    path = folder / "relabel.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.write_text("".join(json.dumps({**r, "decision": "keep"}) + "\n" for r in rows))


# Steps a person takes between two README commands, before the command that starts so.
HUMAN_STEPS = {"saeembed prefs apply": review_queue}


# ---- reading the README ---------------------------------------------------------------------


def readme_steps(text: str) -> list[tuple[str, str]]:
    """(kind, body) in README order: ("command", line), ("failing", "$ line\\nexpected"),
    ("python", code), ("sql", query)."""
    steps = []
    for language, body in BLOCK.findall(text):
        if language == "bash":
            joined = re.sub(r"\\\n\s*", " ", body)
            for line in joined.splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    steps.append(("command", line))
        elif language == "python":
            steps.append(("python", body))
        elif language == "sql":
            steps.append(("sql", body))
        elif language == "":
            lines = body.splitlines()
            for i, line in enumerate(lines):
                if line.startswith("$ saeembed"):
                    rest = lines[i + 1 :]
                    if rest and rest[0].startswith("Error:"):
                        steps.append(("failing", f"{line[2:]}\n{rest[0]}"))
                    else:
                        steps.append(("command", line[2:]))
    return steps


def without_comment(line: str) -> str:
    """``line`` up to a shell comment: a ``#`` outside quotes that starts a word (as bash reads
    it: ``data:x#500`` keeps its ``#``)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def command_words(line: str, places: dict[str, str]) -> list[str]:
    line = without_comment(line)
    for pattern, replacement, _ in SUBSTITUTIONS:
        line = re.sub(pattern, replacement, line, flags=re.M)
    line = line.format(**places) if "{" in line and "}" in line else line
    # bash reads \$ inside double quotes as $; shlex keeps the backslash
    return [word.replace("\\$", "$") for word in shlex.split(line)]


def test_readme_steps_are_found():
    """The reader finds what is there: the commands of every section, the shown failure, the
    Python and SQL blocks (a README edit that hides a block from the runner fails here)."""
    steps = readme_steps(README.read_text())
    kinds = [kind for kind, _ in steps]
    assert kinds.count("python") == 1 and kinds.count("sql") == 1 and kinds.count("failing") == 1
    commands = [body for kind, body in steps if kind == "command"]
    assert len(commands) >= 40
    for family in ("encode", "diff", "cluster", "search", "correlate", "sql", "info", "features",
                   "prefs", "models", "sae", "data", "store", "queries"):  # fmt: skip
        assert any(c.startswith(f"saeembed {family}") for c in commands), family
    assert not [c for c in commands if not c.startswith(("saeembed ", *NOT_RUN))]
    words = command_words('saeembed diff "data:rotten-tomatoes?category=rotten#500" x  # y', {})
    assert words == ["saeembed", "diff", "data:rotten-tomatoes?category=rotten#20", "x"]
    train = command_words("saeembed sae train out --source data:rotten-tomatoes --source "
                          '"assistant:data:hh-rlhf-harmless#2000"', {})  # fmt: skip
    assert train[4:] == ["--source", "data:rotten-tomatoes#20", "--source",
                         "assistant:data:hh-rlhf-harmless#20", "--steps", "20", "--batch-size",
                         "256", "--d-sae", "512"]  # fmt: skip


# ---- the sandbox a newcomer has -------------------------------------------------------------


class FakeLLM(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint that labels every feature "a test label" and says
    the first two texts show the property."""

    def do_POST(self):  # noqa: N802 (the http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        system = body["messages"][0]["content"]
        reply = (
            "1, 2"
            if "Which texts show" in body["messages"][-1]["content"]
            else ("LABEL: a test label\nDESCRIPTION: what the fake server says")
        )
        assert system
        send_json(self, {"choices": [{"message": {"content": reply}}],
                         "usage": {"prompt_tokens": 1, "completion_tokens": 1}})  # fmt: skip

    def log_message(self, *args):
        pass


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def sandbox(saeembed_home, tmp_path_factory):
    """A folder holding what the README's commands expect: the demo store (examples/demo.sh on
    40 snippets per side), the small files its sections name, local stand-ins for a Hub SAE and
    an LLM server. Yields (folder, places for `SUBSTITUTIONS`)."""
    from saeembed.data import load_dataset
    from tests.test_label_imports import np_explanation
    from tests.test_sae_formats import (
        base_weights,
        saelens_cfg_v6,
        sparsify_cfg,
        sparsify_tensors,
        write_saelens,
        write_sparsify,
    )

    folder = tmp_path_factory.mktemp("readme")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "SAEEMBED_DEMO_DB": str(folder / "demo.duckdb"),
           "SAEEMBED_DEMO_DOCS": str(DEMO_DOCS)}  # fmt: skip
    demo = subprocess.run(["bash", str(ROOT / "examples" / "demo.sh")], cwd=folder, env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-3000:]
    # make demo's promises: the table, the report, three next steps
    assert "Concepts that differ between rotten and fresh reviews" in demo.stdout
    assert (folder / "report.html").stat().st_size > 50_000
    steps = [line for line in demo.stdout.splitlines() if line.startswith("  saeembed ")]
    assert len(steps) == 3
    rt = load_dataset("rotten-tomatoes")
    rotten = rt.filter(pl.col("category") == "rotten").head(DEMO_DOCS)
    fresh = rt.filter(pl.col("category") == "fresh").head(DEMO_DOCS)
    _write_jsonl(folder / "rotten.jsonl", rotten.to_dicts())  # what the demo encoded
    _write_jsonl(folder / "fresh.jsonl", fresh.to_dicts())
    _write_jsonl(folder / "a.jsonl", rotten.tail(15).to_dicts())
    _write_jsonl(folder / "b.jsonl", fresh.tail(15).to_dicts())
    _write_jsonl(folder / "reviews.jsonl", rt.slice(500, 30).select("text").to_dicts())
    rt.slice(600, 10).with_row_index("id").select("id", "text", pl.col("category").alias("label")
                                                  ).write_csv(folder / "reviews.csv")  # fmt: skip
    speeches = load_dataset("convention-2012").head(3)
    _write_jsonl(folder / "books.jsonl", speeches.select("text").to_dicts())
    _write_jsonl(folder / "chats.jsonl", rt.slice(700, 12).select("text").to_dicts())
    _write_jsonl(folder / "more-chats.jsonl", rt.slice(800, 12).select("text").to_dicts())
    # answers.duckdb: three "models" answering the same 12 prompts (HH-RLHF replies, by prompt)
    pairs = load_dataset("hh-rlhf-harmless").head(24)
    for name, column, rows in (("model_x", "chosen", slice(0, 12)),
                               ("model_y", "rejected", slice(0, 12)),
                               ("model_z", "chosen", slice(12, 24))):  # fmt: skip
        answers = pairs[rows].select(pl.col(column).alias("text"))
        _write_jsonl(folder / f"{name}.jsonl", answers.to_dicts())
        run_cli(["encode", f"{name}.jsonl", "--db", "answers.duckdb"], folder)
    # hh.duckdb, which the reports section uses before the preferences section makes it
    run_cli(["prefs", "encode", f"data:hh-rlhf-harmless#{SAMPLE_ROWS}", "--db", "hh.duckdb"],
            folder)  # fmt: skip
    lines = [json.dumps(np_explanation(i, f"concept number {i}", layer="15-res")) for i in range(5)]
    (folder / "explanations.jsonl.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
    places = {
        "sparsify_sae": str(
            write_sparsify(folder / "hub" / "layers.3", sparsify_cfg(), sparsify_tensors())
        ),  # fmt: skip
        "saelens_sae": str(
            write_saelens(folder / "saelens-sae", saelens_cfg_v6("standard"), base_weights())
        ),  # fmt: skip
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeLLM)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    places["llm_url"] = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield folder, places
    server.shutdown()


def run_cli(args: list[str], folder: Path):
    """One CLI invocation in ``folder``, as a user's shell runs it (a new process when it starts
    Ray, whose workers outlive a call; in this process otherwise)."""
    if "--engine" in args:
        done = subprocess.run([str(Path(sys.executable).parent / "saeembed"), *args], cwd=folder,
                              capture_output=True, text=True, check=False, timeout=600)  # fmt: skip
        return done.returncode, done.stdout, done.stderr
    from saeembed.cli import main

    here = os.getcwd()
    os.chdir(folder)
    try:
        result = CliRunner().invoke(main, args, catch_exceptions=False)
    finally:
        os.chdir(here)
    return result.exit_code, result.stdout, result.stderr


# ---- running it -----------------------------------------------------------------------------


def test_every_readme_block_runs(sandbox):
    folder, places = sandbox
    failures = []
    for kind, body in readme_steps(README.read_text()):
        if kind == "command" and without_comment(body).strip() in NOT_RUN:
            continue
        for start, step in HUMAN_STEPS.items():
            if body.startswith(start):
                step(folder)
        if kind in ("command", "failing"):
            line, _, expected = body.partition("\n")
            words = command_words(line, places)
            code, out, err = run_cli(words[1:], folder)
            if kind == "failing":
                if code == 0 or err.strip() != expected:
                    failures.append(f"{line}: expected {expected!r}, got {code} {err.strip()!r}")
            elif code != 0 or not (out.strip() or err.strip()):
                failures.append(f"{line}: exit {code}: {(err or out).strip()[-600:]}")
        elif kind == "python":
            here = os.getcwd()
            os.chdir(folder)
            try:
                exec(compile(body, "README.md python block", "exec"), {})  # noqa: S102
            except Exception as exc:  # reported with the others
                failures.append(f"python block: {type(exc).__name__}: {exc}")
            finally:
                os.chdir(here)
        elif kind == "sql":
            with duckdb.connect(str(folder / "books.duckdb"), read_only=True) as con:
                con.sql(body).fetchall()  # runs (which documents qualify depends on the sample)
    assert not failures, "\n".join(failures)
    # what the commands wrote is there
    assert (folder / "pages" / "index.html").exists() and (folder / "tone.html").exists()
    assert (folder / "prefs.html").exists() and (folder / "labels.parquet").exists()
    assert (folder / "my-sae").is_dir() and (folder / "runs" / "my-sae").is_dir()
    shutil.rmtree(folder / "runs", ignore_errors=True)
