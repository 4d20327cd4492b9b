"""A model folder opened for inference: the LM, its token layout, its video tokenizer and the clip spec, checked together.

An LM step folder (:mod:`reelm.lm.lm_checkpoint`) carries everything generation needs: the
Hugging Face model, the token layout, the video tokenizer its codes came from
(``video_tokenizer/``) and the clip spec of its data (frames, fps, size). :func:`load_model_folder`
opens a run folder (its latest checkpoint) or a step folder, on the chosen device (bf16 on
GPUs that support it), and checks that the pieces belong together: the tokenizer's weights
against its own fingerprint, its identity against the layout's, its latent grid at the clip
size against the layout's grid. Each is checked once: the tokenizer's recorded identity against
the layout before anything is loaded, its weights against that record as they load. ``video_tokenizer=DIR`` overrides the folder's tokenizer
(with the same checks). No training config, DeepSpeed or GPU is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from reelm.core.checkpoint_format import CheckpointError, resolve_checkpoint
from reelm.core.config import from_dict
from reelm.core.errors import ReelmError
from reelm.data.clip_sampling import ClipSpec
from reelm.data.token_layout import TokenLayout
from reelm.core.device import compute_dtype, resolve_device
from reelm.lm.lm_checkpoint import build_lm, check_video_tokenizer_identity, read_lm_folder, video_tokenizer_dir
from reelm.tokenizer.tokenizer_checkpoint import load_tokenizer, tokenizer_identity
from reelm.tokenizer.model import VideoTokenizer


@dataclass(frozen=True, eq=False)
class ModelFolder:
    path: Path  # the step folder
    lm: torch.nn.Module  # a Hugging Face LlamaForCausalLM, in eval mode
    layout: TokenLayout
    video_tokenizer: VideoTokenizer
    clip: ClipSpec  # how the training clips were cut: frames, fps, size (square center crop)
    meta: dict  # the LM's reelm.json
    device: torch.device

    @property
    def latent_frames(self) -> int:
        """Latent frames of one training clip: the length the LM was trained to generate."""
        return self.video_tokenizer.latent_shape(self.clip.num_frames, self.clip.size, self.clip.size)[0]

    def identity(self) -> dict:
        """What made a sample: the LM (folder, step, config) and the video tokenizer (its identity)."""
        return {
            "model": str(self.path),
            "step": self.meta.get("step"),
            "lm_config": self.meta.get("config"),
            "reelm_version": self.meta.get("reelm_version"),
            "video_tokenizer": tokenizer_identity(self.video_tokenizer),
            "clip": {"num_frames": self.clip.num_frames, "fps": self.clip.fps, "size": self.clip.size},
        }


def load_model_folder(path: str | Path, *, video_tokenizer: str | Path | None = None, device: str = "auto",
                      clip: ClipSpec | None = None, dtype: torch.dtype | str | None = None) -> ModelFolder:
    """Open the model folder ``path`` for generation; see the module docstring.

    ``dtype``: the LM's weights (a ``torch.dtype`` or its name; None or ``"auto"``: :func:`compute_dtype`).

    ``clip`` is needed only for folders made before reelm 0.2, which do not record their clip spec.
    """
    chosen = resolve_device(device)
    folder, meta, layout = read_lm_folder(path)
    clip = _clip_spec(folder, meta, clip)
    if video_tokenizer is not None:
        tokenizer_dir = resolve_checkpoint(video_tokenizer)
        check_video_tokenizer_identity(tokenizer_dir, layout, source=f"--video-tokenizer {video_tokenizer}")
    else:
        tokenizer_dir = video_tokenizer_dir(folder, layout)
    tokenizer = load_tokenizer(tokenizer_dir).to(chosen)  # its weights checked against that identity's fingerprint
    grid = tokenizer.latent_shape(clip.num_frames, clip.size, clip.size)[1:]
    if tuple(grid) != tuple(layout.latent_hw):
        raise CheckpointError(f"{folder}: the video tokenizer makes a {grid[0]}x{grid[1]} latent grid at "
                              f"{clip.size}x{clip.size}, the model was trained on {layout.latent_hw[0]}x"
                              f"{layout.latent_hw[1]}")
    if dtype is None or dtype == "auto":
        dtype = compute_dtype(chosen)
    else:
        dtype = lm_dtype(dtype)
    lm = build_lm(folder, meta, layout, device=chosen, dtype=dtype)
    return ModelFolder(path=folder, lm=lm, layout=layout, video_tokenizer=tokenizer, clip=clip, meta=meta,
                       device=chosen)


def lm_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``torch_dtype`` as a ``torch.dtype``: a dtype, or its name (``"bfloat16"``, ``"torch.float16"``)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).removeprefix("torch.")
    chosen = getattr(torch, name, None) if name in ("float32", "float16", "bfloat16", "float", "half") else None
    if chosen is None:
        raise ReelmError(f"torch_dtype {dtype!r}: expected torch.float32, torch.bfloat16 or torch.float16")
    return chosen


def _clip_spec(folder: Path, meta: dict, given: ClipSpec | None) -> ClipSpec:
    """The clip spec the folder records, or ``given`` for folders made before reelm 0.2 (which record none)."""
    if meta.get("clip"):
        return from_dict(ClipSpec, meta["clip"], where=f"{folder}/reelm.json clip")
    if given is None:
        raise CheckpointError(f"{folder}: records no clip spec (made before reelm 0.2); give the frame rate and size "
                              "its shards were made with (--fps and --size)")
    return given
