"""reelm.eval: decoding samples and scoring them (reconstruction, generation, prompt adherence)."""
