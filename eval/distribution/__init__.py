"""reelm.eval.distribution: distribution metrics and their detectors.

- ``registry``: the named protocols behind one ``compute(name, generated, reference)``
- ``video_metrics``: FVD and KVD on ``i3d`` features; ``frame_metrics``: FID, KID and IS on ``inception`` features
- ``features``: detector features, cached; ``frechet`` / ``kernel``: the distances themselves
"""
