"""reelm.generation: zero-shot generation from a trained model folder — text-to-video, image-to-video,
continuation and captioning. It joins the video tokenizer (pixels <-> codes) and the LM's generation
engine (token ids), so it sits above both.

- ``model_folder``: open a model folder (LM, token layout, video tokenizer, clip spec), checked together
- ``pipeline``: ``VideoPipeline`` (``from_pretrained``, ``__call__``, ``caption``)
- ``outputs``: writing samples (MP4 / GIF, contact sheet, JSON sidecar) and reading prompt files
- ``story``: story files (timed prompts, text or JSON) and their segments on latent frames
- ``story_generation``: a story made into one video window by window (``VideoPipeline.story``)
- ``video_export``: ``export_to_video``, diffusers' signature

Example::

    from reelm.generation import VideoPipeline
    pipe = VideoPipeline.from_pretrained("runs/lm")   # a local folder: never downloaded
    out = pipe("a red circle moves to the left", generator=torch.Generator().manual_seed(0))
    export_to_video(out.frames[0], "circle.mp4", fps=8)   # out.frames: (B, T, H, W, 3) in [0, 1]
"""

from reelm.generation.pipeline import CaptionOutput, VideoPipeline, VideoPipelineOutput
from reelm.generation.video_export import export_to_video

__all__ = ["CaptionOutput", "VideoPipeline", "VideoPipelineOutput", "export_to_video"]
