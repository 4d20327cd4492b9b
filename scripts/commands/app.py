"""``reelm app``: a local web page for prompting a model folder (a thin main over :mod:`reelm.app.server`)."""

from __future__ import annotations

import argparse

from reelm.commands import add_device_flag, add_weights_flag

DEFAULT_PORT = 7860  # Gradio's default: the port this field's local demos use


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "app", help="Serve a local web page to prompt a model folder and watch its videos.",
        description="Serve a web page on this machine where you type a prompt (or choose an image or a clip), set "
        "seed, frames and guidance, and watch the video appear with its contact sheet and its sidecar's facts. "
        "Requests run one at a time, in order; each shows its place in the queue. Needs the app extra: "
        "pip install 'reelm[app]'.")
    p.add_argument("--model", required=True, metavar="RUN", help="LM run folder (its latest checkpoint) or a "
                   "step-NNNNNN folder; it carries its video tokenizer and clip spec")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine "
                   "only; 0.0.0.0 exposes the page to your network, with no login)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT}; 0: any free "
                   "port, printed)")
    p.add_argument("--out", metavar="DIR", help="folder for the videos, contact sheets and sidecars (default: a "
                   "fresh temporary folder, printed)")
    add_device_flag(p)
    add_weights_flag(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import logging
    import sys

    from reelm.app.server import AppServer, create_app  # a one-line error when the app extra is missing
    from transformers.utils import logging as hf_logging

    from reelm.generation import VideoPipeline

    server = AppServer(args.host, args.port)  # a port in use fails before the model loads
    log = logging.getLogger("reelm.app")  # one line per finished job, tracebacks of unexpected failures
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("reelm app: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    hf_logging.disable_progress_bar()
    pipe = VideoPipeline.from_pretrained(args.model, device=args.device, weights=args.weights)
    app = create_app(pipe, out=args.out)
    print(f"reelm app: serving {args.model} on {server.url} (Ctrl-C to stop; --host 0.0.0.0 to expose it on your "
          f"network)\nreelm app: samples go to {app.state.out}", flush=True)
    server.run(app)
    return 0
