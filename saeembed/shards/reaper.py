"""Ends what the raylet of a local Ray cluster started (its dashboard and runtime-env agents, its
workers) once the saeembed driver that started the cluster is gone, a kill -9 included.

Ray ties the raylet and the head processes to the driver (they die with it), but the raylet's
agents outlive a killed raylet by about a minute: they report its death to the GCS, which died
too, and wait out a 60 s timeout. The driver runs this file as a script (standard library only,
no saeembed import), ``python reaper.py RAYLET_PID...``, with a pipe on its stdin; the reaper
follows the raylets' descendants every half second, and when the pipe closes (the driver exited,
or shut the cluster down and closed it) it sends SIGTERM to those still running, and SIGKILL to
those left after a second. Linux only (it reads /proc)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time

POLL_S = 0.5
GRACE_S = 1.0


def _processes() -> dict[int, tuple[int, int]]:
    """{pid: (parent pid, start time)} of every process."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            found[int(name)] = (int(fields[1]), int(fields[19]))
    return found


def descendants(roots: list[int], processes: dict[int, tuple[int, int]]) -> dict[int, int]:
    """{pid: start time} of the processes below ``roots``."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in processes.items():
        children.setdefault(parent, []).append(pid)
    found, todo = {}, list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found[child] = processes[child][1]
                todo.append(child)
    return found


def _alive(tracked: dict[int, int], now: dict | None = None) -> dict[int, int]:
    """The tracked processes still running (the same start time: not a reused PID)."""
    now = _processes() if now is None else now
    return {pid: start for pid, start in tracked.items() if now.get(pid, (0, None))[1] == start}


def _signal(pids, sig) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def main(argv: list[str]) -> None:
    raylets = [int(a) for a in argv]
    tracked: dict[int, int] = {}
    stdin = sys.stdin.fileno()
    while True:
        ready, _, _ = select.select([stdin], [], [], POLL_S)
        if ready and not os.read(stdin, 4096):
            break  # the driver is gone, or done with the cluster
        now = _processes()
        tracked = _alive({**tracked, **descendants(raylets, now)}, now)
    left = _alive(tracked)
    _signal(left, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = _alive(left)
    _signal(left, signal.SIGKILL)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the driver
    main(sys.argv[1:])
