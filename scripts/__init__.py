"""reelm: autoregressive, token-based video generation.

The package root (physically the repository's ``scripts/`` folder) owns what every
stage shares: the command line (``reelm.cli``), the config system (``reelm.config``)
and the checkpoint format (``reelm.checkpoint``). The stages are subpackages:
``reelm.data`` -> ``reelm.tokenizer`` -> ``reelm.lm`` -> ``reelm.eval``.
"""

__version__ = "0.1.0"
