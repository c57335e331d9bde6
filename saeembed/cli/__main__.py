"""`python -m saeembed.cli`: the command line."""

from saeembed.cli import main

if __name__ == "__main__":
    main()
