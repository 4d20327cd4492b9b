"""Subcommand groups of the ``reelm`` command line; each module has ``register(subparsers)``."""

import argparse


def add_group(subparsers, name: str, help: str) -> argparse._SubParsersAction:
    """Add a command group (``reelm NAME ...``) and return its own subparsers."""
    group = subparsers.add_parser(name, help=help, description=help)
    return group.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)


def add_set_flag(parser: argparse.ArgumentParser, examples: str) -> None:
    """``--set KEY=VALUE`` (repeatable): ``model.KEY`` sets the model config, any other key the training config."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help=f"override a setting, checked against its type: model.KEY for the model, KEY for "
                        f"training (e.g. {examples}); repeatable")


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda|cuda:N`` (resolved by :func:`reelm.device.resolve_device`)."""
    parser.add_argument("--device", default="auto", metavar="DEVICE",
                        help="auto (a GPU when there is one), cpu, cuda or cuda:N (default: auto)")


def add_progress_flag(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: the one flag that turns progress bars off (``args.progress``)."""
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.add_argument("--quiet", dest="progress", action="store_false", help=argparse.SUPPRESS)  # 0.1 spelling
