"""reelm.lm: the multimodal decoder-only LM over text tokens and video codes."""
