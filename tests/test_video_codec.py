"""Video files <-> code grids: the streaming encode and its code buffer."""

import numpy as np
import pytest
import torch

from reelm.data.synthetic.world import SyntheticWorld, WorldConfig
from reelm.data.video_read import frames_to_tensor, read_video
from reelm.data.video_write import write_mp4
from reelm.tokenizer.model import PRESETS, VideoTokenizer
from reelm.tokenizer.video_codec import CodeGridBuffer, _expected_latents, decode_codes, encode_video


def test_code_grid_buffer_grows_and_keeps_every_chunk():
    rng = np.random.default_rng(0)
    chunks = [rng.integers(0, 2**18, size=(t, 3, 5)) for t in (2, 1, 4, 4, 7, 1)]
    buffer = CodeGridBuffer(latent_frames=1)
    for chunk in chunks:
        buffer.append(chunk)
    codes = buffer.view()
    assert codes.dtype == np.int32 and buffer.length == 19
    np.testing.assert_array_equal(codes, np.concatenate(chunks))
    with pytest.raises(ValueError, match="shape"):
        buffer.append(np.zeros((1, 4, 5), dtype=np.int64))


def test_code_grid_buffer_empty():
    assert CodeGridBuffer().view().shape == (0, 0, 0)


@pytest.mark.parametrize("num_frames, max_frames, expected",
                         [(37, None, 10), (37, 9, 3), (None, 9, 3), (None, None, 64), (10**9, None, 4096)])
def test_expected_latents(num_frames, max_frames, expected):
    assert _expected_latents(num_frames, max_frames, 4) == expected


@pytest.mark.parametrize("chunk_latents", [1, 4])
def test_streamed_encode_of_a_file_equals_whole_clip_encode(tmp_path, chunk_latents):
    clip = SyntheticWorld(WorldConfig(height=32, width=32, num_frames=39, seed=5)).clip(1)
    path = write_mp4(tmp_path / "clip.mp4", clip.frames, fps=8)
    torch.manual_seed(0)
    model = VideoTokenizer(PRESETS["tiny"]()).eval()
    codes, meta = encode_video(model, path, chunk_latents=chunk_latents)
    frames = read_video(path)[:37]  # 39 frames: the last 2 do not make a latent frame
    with torch.no_grad():
        whole = model.encode(frames_to_tensor(frames)[None]).indices[0]
    assert meta["frames"] == 37 and codes.shape == (10, 4, 4)
    np.testing.assert_array_equal(codes, whole.numpy())
    assert decode_codes(model, codes, chunk_latents=chunk_latents).shape == (37, 32, 32, 3)


@pytest.mark.parametrize("time_downsample_at, factor", [((1,), 2), ((1, 2), 4), ((1, 2, 3), 8)])
def test_streamed_encode_uses_the_tokenizers_own_temporal_factor(tmp_path, time_downsample_at, factor):
    """A video of any length is cut to 1 + f k frames for the model's f (it once assumed f = 4)."""
    from dataclasses import replace

    cfg = replace(PRESETS["tiny"](), channels=(8, 8, 8, 8), time_downsample_at=time_downsample_at, patch_size=1)
    torch.manual_seed(0)
    model = VideoTokenizer(cfg).eval()
    assert model.temporal_downsample == factor
    num_frames = 1 + 3 * factor + factor // 2 + 1  # not 1 + f k: the tail must be cut to whole latent frames
    clip = SyntheticWorld(WorldConfig(height=32, width=32, num_frames=num_frames, seed=2)).clip(0)
    path = write_mp4(tmp_path / "clip.mp4", clip.frames, fps=8)
    codes, meta = encode_video(model, path, chunk_latents=1)
    kept = 1 + (num_frames - 1) // factor * factor
    with torch.no_grad():
        whole = model.encode(frames_to_tensor(read_video(path)[:kept])[None]).indices[0]
    assert meta["frames"] == kept and codes.shape[0] == 1 + (num_frames - 1) // factor
    np.testing.assert_array_equal(codes, whole.numpy())
