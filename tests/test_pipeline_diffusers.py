"""The pipeline at parity with diffusers' video pipelines: generator, num_videos_per_prompt, output_type,
.frames, torch_dtype, .to(), export_to_video."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_model_folder
from reelm.data.video_read import read_video
from reelm.generation import VideoPipeline, export_to_video
from reelm.generation.pipeline import PipelineInputError

PROMPTS = ["a red circle moves to the left", "a blue square moves up"]


folder = pytest.fixture(scope="module")(lambda tmp_path_factory: make_model_folder(tmp_path_factory.mktemp("dfs")))
pipe = pytest.fixture(scope="module")(lambda folder: VideoPipeline.from_pretrained(folder, device="cpu"))


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_a_generator_seeds_the_call_and_a_list_seeds_each_video_on_its_own(pipe):
    one = pipe(PROMPTS, generator=_seeded(7))
    again = pipe(PROMPTS, generator=_seeded(7))
    other = pipe(PROMPTS, generator=_seeded(8))
    assert all(np.array_equal(a, b) for a, b in zip(one.videos, again.videos))
    assert not all(np.array_equal(a, b) for a, b in zip(one.videos, other.videos))
    # One generator per video: its codes depend on its own generator only, not on its place in the batch.
    pair = pipe(PROMPTS, generator=[_seeded(1), _seeded(2)])
    alone = pipe(PROMPTS[1], generator=[_seeded(2)])
    assert np.array_equal(pair.codes[1], alone.codes[0]) and pair.info["generator"] == "one per video"
    # A generator advances as it is drawn from, as in diffusers: the second call with it differs.
    g = _seeded(3)
    first, second = pipe(PROMPTS[0], generator=g), pipe(PROMPTS[0], generator=g)
    assert not np.array_equal(first.videos[0], second.videos[0])
    with pytest.raises(PipelineInputError, match="3 generators for 2 videos"):
        pipe(PROMPTS, generator=[_seeded(0)] * 3)
    with pytest.raises(PipelineInputError, match="torch.Generator"):
        pipe(PROMPTS[0], generator=5)


def test_num_videos_per_prompt_and_output_types(pipe):
    out = pipe(PROMPTS, num_videos_per_prompt=2, num_frames=9, guidance_scale=1.5, negative_prompt="a green circle")
    assert len(out.videos) == 4 and out.prompts == [PROMPTS[0]] * 2 + [PROMPTS[1]] * 2
    assert out.frames.shape == (4, 9, 32, 32, 3) and out.frames.dtype == np.float32
    assert 0.0 <= out.frames.min() and out.frames.max() <= 1.0
    assert np.array_equal((out.frames * 255).round().astype(np.uint8), np.stack(out.videos))
    pt = pipe(PROMPTS[0], output_type="pt")
    assert isinstance(pt.frames, torch.Tensor) and tuple(pt.frames.shape) == (1, 9, 3, 32, 32)
    assert torch.equal((pt.frames * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2)[0],
                       torch.from_numpy(pt.videos[0]))
    pil = pipe(PROMPTS[0], output_type="pil")
    assert len(pil.frames) == 1 and len(pil.frames[0]) == 9 and isinstance(pil.frames[0][0], Image.Image)
    assert pil.frames[0][0].size == (32, 32) and np.array_equal(np.asarray(pil.frames[0][3]), pil.videos[0][3])
    with pytest.raises(PipelineInputError, match="output_type 'latent'"):
        pipe(PROMPTS[0], output_type="latent")
    with pytest.raises(PipelineInputError, match="say different things"):
        pipe(PROMPTS[0], num_videos_per_prompt=2, num_samples=3)


def test_torch_dtype_and_to(folder, pipe):
    bf16 = VideoPipeline.from_pretrained(folder, device="cpu", torch_dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16 and pipe.dtype == torch.float32
    assert bf16(PROMPTS[0], generator=_seeded(0)).frames.shape == (1, 9, 32, 32, 3)
    assert VideoPipeline.from_pretrained(folder, device="cpu", torch_dtype="float32").dtype == torch.float32
    with pytest.raises(Exception, match="torch_dtype 'int8'"):
        VideoPipeline.from_pretrained(folder, device="cpu", torch_dtype="int8")
    before = pipe(PROMPTS[0], generator=_seeded(4)).videos[0]
    assert pipe.to("cpu") is pipe and pipe.device == torch.device("cpu")
    assert np.array_equal(pipe(PROMPTS[0], generator=_seeded(4)).videos[0], before)
    assert bf16.to(dtype=torch.float32).dtype == torch.float32


def test_export_to_video_takes_what_the_pipeline_returns(pipe, tmp_path):
    out = pipe(PROMPTS[0], generator=_seeded(0))
    path = export_to_video(out.frames[0], str(tmp_path / "a.mp4"), fps=8)
    assert path == str(tmp_path / "a.mp4") and read_video(path).shape == (9, 32, 32, 3)
    pil = pipe(PROMPTS[0], generator=_seeded(0), output_type="pil")
    gif = export_to_video(pil.frames[0], tmp_path / "a.gif", fps=8)
    assert gif == str(tmp_path / "a.gif") and read_video(gif).shape == (9, 32, 32, 3)  # a palette: not exact
    temporary = export_to_video(out.frames[0])
    assert temporary.endswith(".mp4") and read_video(temporary).shape == (9, 32, 32, 3)
    odd = export_to_video(np.zeros((3, 30, 20, 3), np.uint8), tmp_path / "odd.mp4", fps=8)  # padded to 16s
    assert read_video(odd).shape == (3, 32, 32, 3)
    with pytest.raises(Exception, match="bitrate"):
        export_to_video(out.frames[0], tmp_path / "b.mp4", bitrate=1000)
