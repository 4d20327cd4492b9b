"""reelm.demo: the whole pipeline on its embedded default — the synthetic world — in one command.

``reelm demo --out DIR`` renders the world's held-out sets, trains the video tokenizer and scores
its reconstructions, fits the text tokenizer and pre-tokenizes the training clips, pretrains the
LM with DeepSpeed, generates and scores samples (text-to-video on seen and held-out combinations,
image-to-video, continuation, captions), then prints the results against their targets and
writes ``DIR/report.html``. It joins every stage, so it sits above them all.

- ``demo_config``: ``DemoConfig`` (the measured defaults, as typed configs) and budget scaling
- ``stages``: the stages, each resumable, each a library call the ``reelm`` commands also make
- ``run``: ``run_demo``, the orchestration; ``report_card``: the report card
"""

from reelm.demo.demo_config import DemoConfig
from reelm.demo.run import run_demo

__all__ = ["DemoConfig", "run_demo"]
