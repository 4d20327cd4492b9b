"""reelm.generation: zero-shot generation from a trained model folder — text-to-video, image-to-video,
continuation and captioning. It joins the video tokenizer (pixels <-> codes) and the LM's generation
engine (token ids), so it sits above both.

- ``model_folder``: open a model folder (LM, token layout, video tokenizer, clip spec), checked together
- ``pipeline``: ``VideoPipeline`` (``from_pretrained``, ``__call__``, ``caption``)
- ``outputs``: writing samples (MP4 / GIF, contact sheet, JSON sidecar) and reading prompt files

Example::

    from reelm.generation import VideoPipeline
    pipe = VideoPipeline.from_pretrained("runs/lm")   # a local folder: never downloaded
    out = pipe("a red circle moves to the left", seed=0)   # out.videos[0]: (T, H, W, 3) uint8
"""

from reelm.generation.pipeline import CaptionOutput, VideoPipeline, VideoPipelineOutput

__all__ = ["CaptionOutput", "VideoPipeline", "VideoPipelineOutput"]
