"""The `saeembed` command line: the main group, and the command families it adds (in one
direction: the families never import this module). Each command parses its options, makes one
library call (`saeembed.api`), and renders the result (tables on a terminal, JSON lines when
piped). Logs and progress go to stderr.

A family's module is imported only when one of its commands runs (or when --help lists them),
so `saeembed sql` does not load torch."""

from __future__ import annotations

import contextlib
import importlib
import logging
import signal
import sys
import threading
import warnings

import click

from saeembed.version import __version__

log = logging.getLogger("saeembed")

# command name -> the module of its family (which lists it in COMMANDS)
FAMILIES = {
    "encode": "saeembed.cli.corpus",
    "diff": "saeembed.cli.corpus",
    "info": "saeembed.cli.store",
    "sql": "saeembed.cli.store",
    "queries": "saeembed.cli.store",
    "store": "saeembed.cli.store",
    "correlate": "saeembed.cli.explore",
    "probe": "saeembed.cli.explore",
    "cluster": "saeembed.cli.explore",
    "search": "saeembed.cli.explore",
    "features": "saeembed.cli.features",
    "prefs": "saeembed.cli.prefs",
    "data": "saeembed.cli.data",
    "models": "saeembed.cli.models",
    "sae": "saeembed.cli.models",
}


def _setup_logging(verbose: int, quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("saeembed: %(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(
        logging.ERROR if quiet else [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    )


@contextlib.contextmanager
def _no_interrupt():
    """Hold Ctrl-C back while a command family's modules import (their native extensions do not
    survive an interrupt halfway through, and the interpreter could abort); one pressed meanwhile
    arrives as soon as they are loaded."""
    if (
        not hasattr(signal, "pthread_sigmask")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class FamilyGroup(click.Group):
    """A group whose commands are loaded from their family's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(FAMILIES)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = FAMILIES.get(name)
        if module is None:
            return None
        with _no_interrupt():
            commands = {c.name: c for c in importlib.import_module(module).COMMANDS}
        return commands[name]

    def invoke(self, ctx: click.Context):
        """Ctrl-C ends any command with one line and exit code 130 (what writes did commit is
        whole: every write is a transaction or an atomic rename)."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("Error: interrupted (Ctrl-C)", err=True)
            ctx.exit(130)


@click.group(cls=FamilyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="saeembed")
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr, no progress bar.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """SAE embeddings of text corpora, stored in DuckDB: encode documents into sparse vectors of
    interpretable concepts, then query and analyse them."""
    _setup_logging(verbose, quiet)
    ctx.obj = {"quiet": quiet}
    if quiet:  # Python's warnings too: nothing but errors on stderr
        warnings.filterwarnings("ignore")
