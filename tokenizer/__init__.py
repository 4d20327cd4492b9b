"""reelm.tokenizer: the causal video tokenizer (pixels <-> discrete codes).

Modules, one job each:

- ``layers``: causal (2+1)D / 3D convolutions with streaming caches, per-frame GroupNorm, resampling
- ``model``: ``TokenizerConfig``, encoder, decoder, ``VideoTokenizer`` (encode / decode / streams), presets
- ``quantizer``: LFQ, FSQ and VQ behind one adapter returning ``QuantizeResult``
- ``losses``: the training objective: ``LossConfig``, its presets and ``TokenizerLoss`` (reconstruction,
  quantizer, LPIPS, hinge GAN + LeCam); imported by training only, never by loading or encoding
- ``discriminator``: the space-time patch discriminator
- ``perceptual``: LPIPS-VGG16 from a local safetensors file
- ``tokenizer_checkpoint``: ``save_tokenizer`` / ``load_tokenizer`` and the identity stamped on codes files
- ``train``: the training loop (``training_preset``, ``train``); ``video_codec``: video files <-> code grids; ``codes_file``: the ``.npz`` format
- ``pretokenize``: a video-text source -> LM-ready shards

Example::

    from reelm.tokenizer import PRESETS, VideoTokenizer

    tok = VideoTokenizer(PRESETS["tiny"]()).eval()
    quant = tok.encode(video)                     # video (B, 3, 17, 64, 64) in [-1, 1]
    quant.indices.shape                           # (B, 5, 8, 8)
    recon = tok.decode_from_code_indices(quant.indices)
"""

from reelm.tokenizer.tokenizer_checkpoint import check_identity, load_tokenizer, save_tokenizer, tokenizer_identity
from reelm.tokenizer.model import PRESETS, TokenizerConfig, VideoTokenizer
from reelm.tokenizer.quantizer import QuantizeResult, QuantizerConfig

__all__ = [
    "PRESETS",
    "QuantizeResult",
    "QuantizerConfig",
    "TokenizerConfig",
    "VideoTokenizer",
    "check_identity",
    "load_tokenizer",
    "save_tokenizer",
    "tokenizer_identity",
]
