"""Subcommand groups of the ``reelm`` command line; each module has ``register(subparsers)``."""

import argparse


def add_group(subparsers, name: str, help: str) -> argparse._SubParsersAction:
    """Add a command group (``reelm NAME ...``) and return its own subparsers."""
    group = subparsers.add_parser(name, help=help, description=help)
    return group.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
