"""reelm.data.synthetic: the built-in synthetic captioned video world, the embedded default dataset.

- ``world``: ``SyntheticWorld`` (seeded clips with ground truth), ``WorldConfig`` / ``WorldOptions``, rendering sets
- ``scene``: the attribute vocabulary, held-out combinations and scene sampling
- ``render`` / ``shapes``: rasterizing scenes; ``captions``: captions from attributes and parsing them back
"""
