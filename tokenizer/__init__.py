"""reelm.tokenizer: the causal video tokenizer (pixels <-> discrete codes)."""
