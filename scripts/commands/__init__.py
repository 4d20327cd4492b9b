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


def add_config_flags(parser: argparse.ArgumentParser, layout: str) -> None:
    """``--config FILE`` (YAML or JSON, under ``--set``) and ``--print-config`` (the resolved config, then exit)."""
    parser.add_argument("--config", metavar="FILE", help=f"settings from a YAML or JSON file ({layout}); flags and "
                        "--set win over it")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config as YAML (what --config reads) and exit")


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda|cuda:N`` (resolved by :func:`reelm.core.device.resolve_device`)."""
    parser.add_argument("--device", default="auto", metavar="DEVICE",
                        help="auto (a GPU when there is one), cpu, cuda or cuda:N (default: auto)")


def add_weights_flag(parser: argparse.ArgumentParser) -> None:
    """``--weights model|fp16|int8``: the format generation's decode steps read the LM's weights in
    (:mod:`reelm.lm.decode_weights`)."""
    from reelm.lm.decode_weights import WEIGHT_FORMATS

    parser.add_argument("--weights", choices=WEIGHT_FORMATS, default="model",
                        help="how token-by-token decoding reads the LM's weights: model (as loaded: fp32 on CPUs, "
                        "bf16 on GPUs; default), fp16 (half the bytes, fp32 arithmetic) or int8 (a quarter, "
                        "per-channel int8); fp16 and int8 are CPU formats, faster where reading the weights bounds "
                        "a token (BENCHMARKS.md, generation)")


def add_progress_flag(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: the one flag that turns progress bars off (``args.progress``)."""
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.add_argument("--quiet", dest="progress", action="store_false", help=argparse.SUPPRESS)  # 0.1 spelling


def add_report_flag(parser: argparse.ArgumentParser) -> None:
    """``--report-to NAMES``: the trackers a training run also reports to (``args.report_to``, read with
    :func:`report_to`); ``--tensorboard`` is its 0.2 spelling for TensorBoard."""
    parser.add_argument("--report-to", default="none", metavar="NAMES",
                        help="also report metrics and images to tensorboard (the run folder's tensorboard/), wandb or "
                        "trackio; comma-separated, all (those installed) or none (default: none)")
    parser.add_argument("--tensorboard", action="store_true", help=argparse.SUPPRESS)  # 0.2: --report-to tensorboard


def report_to(args: argparse.Namespace) -> tuple[str, ...]:
    """The trackers the report flags name, checked (:func:`reelm.core.trackers.resolve_report_to`)."""
    from reelm.core.trackers import resolve_report_to

    return resolve_report_to([args.report_to] + (["tensorboard"] if args.tensorboard else []))


def add_world_flags(parser: argparse.ArgumentParser, *, scope: str = "") -> None:
    """The synthetic world's options, the same flags wherever ``--data synthetic`` (or the world itself) is used."""
    from reelm.data.synthetic.scene import SPLITS

    parser.add_argument("--split", choices=SPLITS, help=f"world split to draw{scope} (default: train; heldout: "
                        "only clips with a held-out attribute combination)")
    parser.add_argument("--max-objects", type=int, metavar="N", help=f"at most N objects per clip{scope} (default: 2)")
    parser.add_argument("--plain-backgrounds", action="store_const", const=True,
                        help=f"plain backgrounds only, no textures{scope}")
    parser.add_argument("--start", type=int, metavar="I", help=f"first world clip index, for sharding{scope} "
                        "(default: 0)")
    for name in VOCABULARY_FLAGS:
        parser.add_argument(f"--{name}", metavar="A,B,...", help=f"the {name} to draw{scope}, comma-separated "
                            f"(default: all; e.g. --shapes circle,square,triangle)")
    parser.add_argument("--start-positions", choices=("away", "independent"),
                        help=f"where objects start{scope}: away (the half the motion leads away from; default) or "
                        "independent (one central region for every motion)")


VOCABULARY_FLAGS = ("shapes", "colors", "sizes", "motions", "speeds")


def add_source_flags(parser: argparse.ArgumentParser) -> None:
    """How a manifest or dataset is read (:class:`reelm.data.sources.SourceOptions`): its video and caption
    columns, and ``--confine-to-root``, which skips (and records) rows whose video lies outside the manifest's
    folder. A manifest's paths may be absolute or relative to its folder and are read wherever they lead;
    confining them is for services that read manifests written by someone else."""
    parser.add_argument("--video-column", metavar="NAME", help="the manifest's column of video paths (default: the "
                        "first of video, video_path, path, file, image)")
    parser.add_argument("--caption-column", metavar="NAME", help="the manifest's column of captions (default: the "
                        "first of caption, text, description)")
    parser.add_argument("--confine-to-root", action="store_true",
                        help="skip manifest rows whose video lies outside the manifest's folder ('../', absolute "
                        "paths elsewhere), e.g. for manifests from someone else (default: read every path)")
    parser.add_argument("--allow-outside-root", action="store_true", help=argparse.SUPPRESS)  # 0.2: now the default


def source_options(args: argparse.Namespace):
    """:class:`reelm.data.sources.SourceOptions` from the source flags."""
    from reelm.data.sources import SourceOptions

    return SourceOptions(video_column=args.video_column, caption_column=args.caption_column,
                         confine_to_root=args.confine_to_root)


def source_settings(args: argparse.Namespace) -> list[str]:
    """The source flags given, as ``source.KEY=VALUE`` settings of a training config."""
    given = {"video_column": args.video_column, "caption_column": args.caption_column,
             "confine_to_root": "true" if args.confine_to_root else None}
    return [f"source.{key}={value}" for key, value in given.items() if value is not None]


def world_flags(args: argparse.Namespace) -> dict:
    """The world flags given, as typed fields of :class:`reelm.data.synthetic.world.WorldOptions`."""
    given = {"split": args.split, "max_objects": args.max_objects, "start": args.start,
             "textured_backgrounds": False if args.plain_backgrounds else None,
             "start_positions": args.start_positions}
    for name in VOCABULARY_FLAGS:
        if getattr(args, name) is not None:
            given[name] = tuple(v.strip() for v in getattr(args, name).split(",") if v.strip())
    return {key: value for key, value in given.items() if value is not None}


def world_options(args: argparse.Namespace, base=None):
    """:class:`reelm.data.synthetic.world.WorldOptions`: ``base`` (default: the defaults) with the world flags given."""
    from dataclasses import replace

    from reelm.data.synthetic.world import WorldOptions

    return replace(base if base is not None else WorldOptions(), **world_flags(args))


def add_story_context_flag(parser: argparse.ArgumentParser) -> None:
    """``--story-context``: what each continuation window of a story is given."""
    from reelm.generation.story import STORY_CONTEXTS

    parser.add_argument("--story-context", choices=STORY_CONTEXTS, default="pixels",
                        help="stories: each window continues the last frames re-encoded (pixels, the default) or the "
                             "model's own codes, only the context's first latent frame re-encoded (codes), or the last "
                             "frames with the story's first frame in place of the first (anchor: for a model trained "
                             "with --story-anchor-windows)")


def add_story_candidates_flags(parser: argparse.ArgumentParser) -> None:
    """``--candidates N --choose CRITIC``: every continuation window of a story the best of N."""
    from reelm.generation.story_critics import STORY_CRITICS

    parser.add_argument("--candidates", type=int, default=1, metavar="N",
                        help="stories: sample every continuation window N times and keep the one --choose picks "
                             "(N times the windows' work; default: 1, no choice)")
    parser.add_argument("--choose", choices=sorted(STORY_CRITICS),
                        help="stories, with --candidates: the critic that keeps a window's candidate (outline: the "
                             "object keeps its outline; for plain backgrounds, as the synthetic world's)")


def check_story_candidates(args: argparse.Namespace, story_flag: str, *, story: bool) -> None:
    """One :class:`ReelmError` line for ``--candidates`` / ``--choose`` given where they cannot apply."""
    from reelm.core.errors import ReelmError

    if not story and (args.candidates != 1 or args.choose):
        raise ReelmError(f"--candidates and --choose are for stories: give {story_flag}")
    if args.candidates < 1:
        raise ReelmError(f"--candidates {args.candidates}: expected a positive number of samples a window")
    if (args.candidates > 1) != bool(args.choose):
        raise ReelmError("--candidates N (N > 1) and --choose CRITIC go together: each window's N samples need a "
                         "critic to keep one, and a critic needs more than one to choose from")


def add_sampling_flags(parser: argparse.ArgumentParser, *, default: str) -> None:
    """How generated ids are chosen: ``--temperature``, ``--top-k``, ``--top-p``, ``--greedy``."""
    parser.add_argument("--temperature", type=float, help=f"sampling temperature (default: {default})")
    parser.add_argument("--top-k", type=int, metavar="K", help="sample among the K most likely ids")
    parser.add_argument("--top-p", type=float, metavar="P", help="sample among the most likely ids holding P of the "
                        "probability (nucleus)")
    parser.add_argument("--greedy", action="store_true", help="always take the most likely id (deterministic)")


def sampling_from(args: argparse.Namespace, default):
    """:class:`reelm.lm.sampling.Sampling` from the sampling flags, or ``default`` when none is given."""
    from reelm.lm.sampling import Sampling

    if not (args.greedy or args.temperature is not None or args.top_k is not None or args.top_p is not None):
        return default
    return Sampling(temperature=1.0 if args.temperature is None else args.temperature, top_k=args.top_k,
                    top_p=args.top_p, greedy=args.greedy)
