"""The tiny tokenizer keeps object colors: trained briefly on one clip per palette color, it gives each back.

Before residual-autoencoding shortcuts and FSQ, the same 300 steps returned every object as a grey
blob: per-object color errors of 135-178 (RGB distance, 0-255 scale), against 1-22 now.
"""

import numpy as np
import torch

from reelm.data.synthetic.world import SyntheticWorld, WorldConfig
from reelm.data.synthetic.scene import COLORS
from reelm.data.synthetic.shapes import inside
from reelm.data.video_read import frames_to_tensor, tensor_to_frames
from reelm.core.schedule import warmup_cosine
from reelm.tokenizer.losses import LOSS_PRESETS, TokenizerLoss
from reelm.tokenizer.model import PRESETS, VideoTokenizer
from reelm.tokenizer.train import TokenizerTrainConfig

SIZE, FRAMES, STEPS = 32, 5, 300
# Half the smallest distance between two palette colors (yellow-orange, 90.7): below it, the
# nearest palette color of every reconstructed object is its own.
MAX_COLOR_ERROR = 0.5 * min(
    float(np.linalg.norm(np.subtract(a, b))) for i, a in enumerate(COLORS.values()) for b in list(COLORS.values())[i + 1:]
)


def one_clip_per_color() -> list:
    """The first medium or large one-object clip of each color on a plain background (32 x 32, 5 frames)."""
    world = SyntheticWorld(WorldConfig(height=SIZE, width=SIZE, num_frames=FRAMES, max_objects=1,
                                       textured_backgrounds=False, seed=5))
    found = {}
    index = 0
    while len(found) < len(COLORS):
        clip = world.clip(index)
        obj = clip.attributes["objects"][0]
        if obj["size"] != "small":
            found.setdefault(obj["color"], clip)
        index += 1
    return list(found.values())


def object_pixels(obj: dict) -> np.ndarray:
    """(T, H, W) mask of the pixels the object covers entirely (all four corners inside), from its track."""
    center = np.asarray(obj["track"]["center"])  # (T, 2)
    covered = np.ones((len(center), SIZE, SIZE), dtype=bool)
    for oy in (0.0, 1.0):
        for ox in (0.0, 1.0):
            dx = (np.arange(SIZE)[None, None, :] + ox - center[:, 0, None, None]) / obj["radius"]  # (T, 1, W)
            dy = (np.arange(SIZE)[None, :, None] + oy - center[:, 1, None, None]) / obj["radius"]  # (T, H, 1)
            covered &= inside(obj["shape"], dx, dy)
    return covered


def test_tiny_tokenizer_gives_back_object_colors():
    torch.manual_seed(0)
    clips = one_clip_per_color()
    video = torch.stack([frames_to_tensor(c.frames) for c in clips])  # (8, 3, T, H, W)
    cfg = PRESETS["tiny"]()
    train = TokenizerTrainConfig(steps=STEPS, lr=2e-3, warmup_steps=10, loss=LOSS_PRESETS["tiny"]())
    model, loss = VideoTokenizer(cfg), TokenizerLoss(train.loss)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, betas=train.betas)
    scheduler = warmup_cosine(optimizer, warmup_steps=train.warmup_steps, total_steps=STEPS,
                              min_lr_ratio=train.min_lr_ratio)
    for step in range(STEPS):
        recon, quant = model(video)
        terms = loss.generator_loss(video, recon, quant, step=step)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
        optimizer.step()
        scheduler.step()
    with torch.no_grad():
        frames = tensor_to_frames(model.eval().decode_from_code_indices(model.encode(video).indices))  # (8, T, H, W, 3)
    errors = {}
    for clip, recon_frames in zip(clips, frames):
        obj = clip.attributes["objects"][0]
        mean_rgb = recon_frames[object_pixels(obj)].astype(np.float64).mean(0)
        errors[obj["color"]] = round(float(np.linalg.norm(mean_rgb - np.asarray(COLORS[obj["color"]]))), 1)
    assert max(errors.values()) < MAX_COLOR_ERROR, errors
