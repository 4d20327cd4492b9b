"""reelm: autoregressive, token-based video generation.

The package root (physically the repository's ``scripts/`` folder) owns what every
stage shares, each thing in one module: the command line (``reelm.cli``,
``reelm.commands``), the config system (``reelm.config``), the checkpoint format
(``reelm.checkpoint``), atomic writes (``reelm.atomic``), device and precision choice
(``reelm.device``), distributed start-up (``reelm.distributed``), the LR schedule
(``reelm.schedule``), the resume rule (``reelm.resume``), the metrics log
(``reelm.metrics_log``), errors (``reelm.errors``). The stages are subpackages:
``reelm.data`` -> ``reelm.tokenizer`` -> ``reelm.lm`` -> ``reelm.eval``.
"""

__version__ = "0.2.0"
