"""The times the README promises a newcomer, measured: `make demo`'s main job (examples/demo.sh:
fetch the data, encode 500 rotten and 500 fresh snippets, name the concepts, diff, write the
report, show a feature) on a fresh store and again on the finished one, and the README's next
steps on the demo store. Each command runs as a user runs it, a new `saeembed` process, with the
model and data already cached (a first run adds their download).

    .venv/bin/python benchmarks/first_hour.py [--docs 500] [--repeats 1]

Prints one line per step (seconds) and the machine; README.md quotes these figures through docs/benchmarks.md."""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def timed(command: list[str] | str, env: dict, cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                          shell=isinstance(command, str), check=False)  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}): {command}\n{done.stderr[-2000:]}")
    return seconds, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=500, help="snippets per side (the demo's 500)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="first-hour-"))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
           "SAEEMBED_DEMO_DOCS": str(args.docs)}  # fmt: skip
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}; {args.docs} snippets per side")  # fmt: skip
    for repeat in range(args.repeats):
        db = work / f"demo-{repeat}.duckdb"
        env["SAEEMBED_DEMO_DB"] = str(db)
        env["SAEEMBED_DEMO_REPORT"] = str(work / f"report-{repeat}.html")
        demo = ["bash", str(ROOT / "examples" / "demo.sh")]
        first, output = timed(demo, env, work)
        named = re.findall(r"named [\d,]+ concepts .*?\(([\d.]+) s\)", output)
        print(f"demo on a fresh store: {first:.1f} s (naming: {named} s)")
        again, _ = timed(demo, env, work)
        print(f"demo again on the finished store: {again:.1f} s")
        steps = [
            f"saeembed -q diff rotten fresh --db {db} --by themes --format csv",
            f"saeembed -q search {db} boring --top 5 --format csv",
            f"saeembed -q features pages {db} --out {work / 'pages'} --top 30",
            f"saeembed -q features label {db} --format csv",
        ]
        for step in steps:
            seconds, _ = timed(step, env, work)
            print(f"{seconds:7.1f} s  {step.replace(str(work) + '/', '')}")


if __name__ == "__main__":
    main()
