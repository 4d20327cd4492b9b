"""reelm: autoregressive, token-based video generation.

The package root is physically the repository's ``scripts/`` folder (the fixed layout maps
``reelm`` onto it); the stages are the other folders. What lives where:

- ``reelm.core``: shared infrastructure, one owner each, importing no stage: the config system
  (``config``), the checkpoint format (``checkpoint_format``), atomic writes (``atomic``), device
  and precision choice (``device``), distributed start-up (``distributed``), errors (``errors``),
  the LR schedule (``schedule``), the resume rule (``resume``), the metrics log (``metrics_log``)
  and the trackers it reports to (``trackers``), progress bars (``progress``), weight files (``weights``), derived seeds (``seeds``), the video tokenizer's identity
  (``tokenizer_identity``), what a training run returns (``train_result``), the CPU allocator
  (``cpu_allocator``)
- the stages, data flowing one way: ``reelm.data`` -> ``reelm.tokenizer`` -> ``reelm.lm`` ->
  ``reelm.eval``
- above the stages: ``reelm.generation`` (the pipeline joining the video tokenizer and the LM),
  ``reelm.demo`` (the whole pipeline in one command) and ``reelm.app`` (a local web page over the
  pipeline, ``reelm app``)
- entry points: ``reelm.cli`` (the ``reelm`` command) and ``reelm.commands`` (one thin module per
  command group; the only place command-line strings become typed configs)
"""

__version__ = "0.2.0"
