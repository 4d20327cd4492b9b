"""reelm.data: video I/O, the synthetic captioned video world, datasets, the token layout, shards."""
