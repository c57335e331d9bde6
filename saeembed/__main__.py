"""`python -m saeembed`: the command line (as the `saeembed` script)."""

from saeembed.cli import main

if __name__ == "__main__":
    main(prog_name="saeembed")
