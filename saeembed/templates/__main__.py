"""`python -m saeembed.templates`: check the shipped templates (run by `make lint`)."""

import sys

from saeembed.templates import check

problems = check()
for problem in problems:
    print(problem, file=sys.stderr)
sys.exit(1 if problems else 0)
