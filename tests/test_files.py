"""Atomic file writes (`saeembed.files`): a writer killed with SIGKILL leaves a hidden partial
file and never a truncated one; the next write of the same file sweeps up the dead writer's
partial and leaves a live writer's alone."""

from __future__ import annotations

import subprocess
import sys

import pytest

from saeembed.files import PARTIAL_SUFFIX, atomic_path

WRITER = """
import sys, time
from saeembed.files import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("half of a page")
    print("writing", flush=True)
    time.sleep(60)
"""


def start_writer(path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "writing"
    return proc


def partials(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(PARTIAL_SUFFIX))


def test_a_killed_writer_leaves_no_file_and_its_partial_is_swept_by_the_next_write(tmp_path):
    page = tmp_path / "map.html"
    dead = start_writer(page)
    dead.kill()
    dead.wait()
    assert not page.exists() and len(partials(tmp_path)) == 1
    live = start_writer(page)
    try:
        [mine] = [p for p in partials(tmp_path) if f".{live.pid}-" in p]
        with atomic_path(page) as tmp:
            tmp.write_text("<html></html>")
        assert page.read_text() == "<html></html>"
        assert partials(tmp_path) == [mine]  # the dead writer's is gone, the live one's kept
    finally:
        live.kill()
        live.wait()


def test_an_error_inside_the_block_keeps_the_previous_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("before")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("after, half")
        raise RuntimeError("disk full")
    assert path.read_text() == "before" and partials(tmp_path) == []
