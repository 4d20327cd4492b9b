"""The causal video tokenizer: shapes, exact causality, images as 1-frame videos, streaming, checkpoints."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from reelm.core import checkpoint_format as ckpt
from reelm.core.config import ConfigError, from_dict, to_dict
from reelm.core.errors import ReelmError
from reelm.tokenizer.tokenizer_checkpoint import (
    TokenizerMismatchError,
    check_identity,
    load_tokenizer,
    save_tokenizer,
    tokenizer_identity,
)
from reelm.tokenizer.layers import Downsample, Upsample, match_channels
from reelm.tokenizer.model import PRESETS, TokenizerConfig, VideoShapeError, VideoTokenizer
from reelm.tokenizer.quantizer import QuantizerConfig

QUANTIZERS = {
    "lfq": QuantizerConfig(kind="lfq", codebook_size=2**6),
    "fsq": QuantizerConfig(kind="fsq", levels=(5, 5, 3)),
    "vq": QuantizerConfig(kind="vq", codebook_size=32, dim=4),
}


def micro(kind: str = "lfq", **overrides) -> TokenizerConfig:
    """8x space (patch 2, two downsamples), 4x time, a few thousand parameters."""
    fields = dict(channels=(8, 16, 16), patch_size=2, res_blocks=1, norm_groups=4, quantizer=QUANTIZERS[kind])
    return TokenizerConfig(**{**fields, **overrides})


def randomized(cfg: TokenizerConfig, seed: int = 0) -> VideoTokenizer:
    """A tokenizer in eval mode whose weights are all random, so every temporal tap is live
    (at init the temporal convs are identities and residual branches zero)."""
    torch.manual_seed(seed)
    model = VideoTokenizer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 1.0 / p[0].numel() ** 0.5)
    return model.eval()


def video(frames: int, height: int = 16, width: int = 16, batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, frames, height, width, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def latents(model: VideoTokenizer, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.encoder(x)  # (B, D, t, h, w) before quantization: the most sensitive probe


# --- shapes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("frames,height,width", [(1, 16, 16), (5, 8, 24), (9, 32, 16), (13, 16, 40)])
def test_shapes_across_sizes(frames, height, width):
    model = randomized(micro())
    x = video(frames, height, width, batch=2)
    t, h, w = model.latent_shape(frames, height, width)
    assert (t, h, w) == (1 + (frames - 1) // 4, height // 8, width // 8)
    with torch.no_grad():
        recon, quant = model(x)
    assert quant.codes.shape == (2, model.quantizer.dim, t, h, w)
    assert quant.indices.shape == (2, t, h, w)
    assert recon.shape == x.shape


def test_sixteen_times_spatial_config():
    cfg = micro(channels=(8, 8, 16, 16), patch_size=2, time_downsample_at=(2, 3))
    model = randomized(cfg)
    assert (model.spatial_downsample, model.temporal_downsample) == (16, 4)
    with torch.no_grad():
        recon, quant = model(video(9, 32, 48))
    assert quant.indices.shape == (1, 3, 2, 3) and recon.shape == (1, 3, 9, 32, 48)


def test_tiny_preset_compresses_17x64x64_to_5x8x8():
    model = VideoTokenizer(PRESETS["tiny"]()).eval()
    with torch.no_grad():
        recon, quant = model(video(17, 64, 64))
    assert quant.indices.shape == (1, 5, 8, 8) and recon.shape == (1, 3, 17, 64, 64)
    assert model.codebook_size == 2**10


def test_package_docstring_example_runs():
    import textwrap

    import reelm.tokenizer

    example = textwrap.dedent(reelm.tokenizer.__doc__.split("Example::")[1])
    scope = {"video": video(17, 64, 64, batch=2)}
    with torch.no_grad():
        exec(example, scope)
    assert scope["quant"].indices.shape == (2, 5, 8, 8) and scope["recon"].shape == (2, 3, 17, 64, 64)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_8x_4x_and_round_trip_through_json(name):
    cfg = PRESETS[name]()
    assert (cfg.spatial_downsample, cfg.temporal_downsample) == (8, 4)
    assert from_dict(TokenizerConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg


def test_bad_inputs_and_configs_are_one_line_errors():
    model = randomized(micro())
    for bad, pattern in [
        (video(16), r"16 frames; the tokenizer needs 1 \+ 4k frames \(e.g. 13 or 17\)"),
        (video(5, 12, 16), "multiples of 8"),
        (torch.zeros(1, 1, 5, 16, 16), r"expected a video \(B, 3, T, H, W\)"),
    ]:
        with pytest.raises(VideoShapeError, match=pattern) as err:
            model.encode(bad)
        assert "\n" not in str(err.value)
    with pytest.raises(ReelmError, match="must lie in"):
        model.decode_from_code_indices(torch.full((1, 1, 2, 2), model.codebook_size))
    with pytest.raises(ConfigError, match="conv"):
        VideoTokenizer(micro(conv="4d"))
    with pytest.raises(ConfigError, match="time_downsample_at"):
        VideoTokenizer(micro(time_downsample_at=(0, 1)))
    with pytest.raises(ConfigError, match="norm_groups"):
        VideoTokenizer(micro(norm_groups=3))
    with pytest.raises(ConfigError, match="shortcuts needs a quantizer that keeps magnitudes"):
        VideoTokenizer(micro("lfq", shortcuts=True))


# --- shortcuts (residual autoencoding) ---------------------------------------------------------


def test_match_channels_averages_groups_or_repeats():
    x = torch.arange(6.0).reshape(1, 6, 1)  # (B, C, N)
    assert match_channels(x, 6) is x
    assert match_channels(x, 3).flatten().tolist() == [0.5, 2.5, 4.5]
    assert match_channels(x, 4).flatten().tolist() == [0.5, 2.5, 4.0, 5.0]  # groups of 2, 2, 1, 1
    assert match_channels(x[:, :2], 6).flatten().tolist() == [0, 0, 0, 1, 1, 1]
    assert match_channels(x[:, :3], 4).flatten().tolist() == [0, 0, 1, 2]


def _shortcut_only(module):
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
    return module


def test_downsample_shortcut_is_causal_average_pooling():
    """With its convolution zeroed, a 2x space-time Downsample averages each 2x2x2 block, frame 0 with itself."""
    down = _shortcut_only(Downsample(2, 2, time=True, factorized=True, shortcut=True))
    x = video(5, 8, 8)[:, :2]  # (1, 2, 5, 8, 8)
    padded = torch.cat([x[:, :, :1], x], dim=2)  # (1, 2, 6, 8, 8)
    torch.testing.assert_close(down(x), torch.nn.functional.avg_pool3d(padded, 2))


def test_upsample_shortcut_is_nearest_neighbour():
    """With its convolution zeroed, a 2x space-time Upsample copies latent frame i to frames 2i - 1, 2i."""
    up = _shortcut_only(Upsample(4, 2, time=True, factorized=True, shortcut=True))
    z = video(3, 4, 4)[:, :1].repeat(1, 4, 1, 1, 1)  # (1, 4, 3, 4, 4): every channel the same
    out = up(z)  # (1, 2, 5, 8, 8)
    expected = z[:, :2].repeat_interleave(2, dim=2)[:, :, 1:].repeat_interleave(2, 3).repeat_interleave(2, 4)
    torch.testing.assert_close(out, expected)


# --- causality -------------------------------------------------------------------------------


@pytest.mark.parametrize("shortcuts", [False, True])
@pytest.mark.parametrize("conv", ["2+1d", "3d"])
@pytest.mark.parametrize("changed,first_affected", [(16, 4), (8, 2), (5, 2)])
def test_encoder_is_causal(conv, changed, first_affected, shortcuts):
    """Changing frame f changes latent frames >= ceil(f / 4) only (latent i sees frames <= 4i)."""
    model = randomized(micro("fsq" if shortcuts else "lfq", conv=conv, shortcuts=shortcuts))
    x = video(17)
    y = x.clone()
    y[:, :, changed] = -y[:, :, changed]
    a, b = latents(model, x), latents(model, y)
    torch.testing.assert_close(a[:, :, :first_affected], b[:, :, :first_affected], rtol=0, atol=1e-6)
    assert (a[:, :, first_affected] - b[:, :, first_affected]).abs().max() > 1e-3


@pytest.mark.parametrize("shortcuts", [False, True])
@pytest.mark.parametrize("conv", ["2+1d", "3d"])
def test_decoder_is_causal(conv, shortcuts):
    """Changing latent frame 2 leaves output frames 0..4 (made from latent frames 0 and 1) unchanged."""
    model = randomized(micro("fsq" if shortcuts else "lfq", conv=conv, shortcuts=shortcuts))
    codes = torch.randn(1, model.quantizer.dim, 4, 2, 2)
    changed = codes.clone()
    changed[:, :, 2] += 1
    with torch.no_grad():
        a, b = model.decode(codes), model.decode(changed)
    assert a.shape[2] == 13
    torch.testing.assert_close(a[:, :, :5], b[:, :, :5], rtol=0, atol=1e-6)
    assert (a[:, :, 5] - b[:, :, 5]).abs().max() > 1e-3


@pytest.mark.parametrize("kind,shortcuts", [(k, False) for k in sorted(QUANTIZERS)] + [("fsq", True), ("vq", True)])
def test_image_is_a_one_frame_video(kind, shortcuts):
    model = randomized(micro(kind, shortcuts=shortcuts))
    x = video(9, 16, 24, batch=2)
    with torch.no_grad():
        clip, image = model.encode(x), model.encode(x[:, :, :1])
        decoded = model.decode(image.codes)
    assert image.indices.shape == (2, 1, 2, 3) and decoded.shape == (2, 3, 1, 16, 24)
    assert torch.equal(image.indices, clip.indices[:, :1])
    torch.testing.assert_close(image.codes, clip.codes[:, :, :1])


# --- decode / layouts ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(QUANTIZERS))
def test_decode_from_code_indices_equals_forward(kind):
    model = randomized(micro(kind))
    x = video(9)
    with torch.no_grad():
        recon, quant = model(x)
        again = model.decode_from_code_indices(quant.indices)
    torch.testing.assert_close(again, recon)


@pytest.mark.parametrize("shortcuts", [False, True])
def test_channels_last_and_contiguous_layouts_agree(shortcuts):
    kind = "fsq" if shortcuts else "lfq"
    fast = randomized(micro(kind, channels_last=True, shortcuts=shortcuts))
    plain = VideoTokenizer(micro(kind, channels_last=False, shortcuts=shortcuts)).eval()
    plain.load_state_dict(fast.state_dict())
    x = video(9)
    with torch.no_grad():
        a, b = fast(x), plain(x)
    torch.testing.assert_close(a[0], b[0], rtol=1e-4, atol=1e-5)
    assert torch.equal(a[1].indices, b[1].indices)


def test_training_step_reaches_every_parameter():
    model = VideoTokenizer(micro()).train()
    x = video(5, batch=2)
    for _ in range(2):  # zero-initialised branches get gradients from the second step on
        recon, quant = model(x)
        model.zero_grad()
        ((recon - x).abs().mean() + quant.aux_loss).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 1e-2 * p.grad.sign()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


# --- streaming ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,shortcuts", [(k, False) for k in sorted(QUANTIZERS)] + [("fsq", True), ("vq", True)])
def test_chunked_encode_and_decode_equal_whole_clip(kind, shortcuts):
    model = randomized(micro(kind, shortcuts=shortcuts))
    x = video(25, batch=2)
    with torch.no_grad():
        whole = model.encode(x)
        whole_video = model.decode(whole.codes)
    pieces = [x[:, :, :5], x[:, :, 5:13], x[:, :, 13:17], x[:, :, 17:]]
    streamed = torch.cat(list(model.encode_stream(pieces)), dim=1)
    assert torch.equal(streamed, whole.indices)
    code_pieces = [whole.indices[:, :2], whole.indices[:, 2:3], whole.indices[:, 3:]]
    decoded = list(model.decode_stream(code_pieces))
    assert [d.shape[2] for d in decoded] == [5, 4, 16]
    torch.testing.assert_close(torch.cat(decoded, dim=2), whole_video, rtol=1e-4, atol=1e-5)
    # the stream leaves no state behind: a second pass gives the same
    assert torch.equal(torch.cat(list(model.encode_stream(pieces)), dim=1), whole.indices)


@pytest.mark.parametrize("shortcuts", [False, True])
def test_streamed_latents_equal_whole_clip_latents(shortcuts):
    model = randomized(micro("fsq" if shortcuts else "lfq", conv="3d", channels_last=True, shortcuts=shortcuts))
    x = video(17)
    whole = latents(model, x)
    with torch.no_grad(), model._stream(model.encoder):
        parts = [model.encoder(x[:, :, :1]), model.encoder(x[:, :, 1:9]), model.encoder(x[:, :, 9:])]
    torch.testing.assert_close(torch.cat(parts, dim=2), whole, rtol=1e-5, atol=1e-5)


def test_stream_chunk_errors():
    model = randomized(micro())
    with pytest.raises(VideoShapeError, match="chunk 1 .* multiple of 4 frames"):
        list(model.encode_stream([video(5), video(3)]))
    with pytest.raises(VideoShapeError, match=r"chunk 2 has shape \(1, 3, 4, 16, 24\)"):
        list(model.encode_stream([video(5), video(4), video(4, 16, 24)]))
    with pytest.raises(VideoShapeError, match="1 \\+ 4k"):
        list(model.encode_stream([video(4)]))
    assert len(list(model.encode_stream([video(5)]))) == 1  # usable again after an error


# --- checkpoints -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(QUANTIZERS))
def test_checkpoint_round_trip_gives_identical_outputs(kind, tmp_path):
    model = randomized(micro(kind))
    if kind == "vq":  # EMA codebook buffers are part of the checkpoint
        model.train()(video(5))
        model.eval()
    folder = save_tokenizer(model, tmp_path / "tok")
    meta = ckpt.read_meta(folder, kind="video_tokenizer")
    assert (meta["codebook_size"], meta["temporal_downsample"], meta["spatial_downsample"]) == (
        model.codebook_size, 4, 8,
    )
    loaded = load_tokenizer(folder)
    assert not loaded.training and loaded.cfg == model.cfg
    x = video(9)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1].indices, b[1].indices)
    assert tokenizer_identity(loaded) == tokenizer_identity(model)
    check_identity(tokenizer_identity(model), loaded)


def test_load_from_run_folder_takes_latest_checkpoint(tmp_path):
    first, second = randomized(micro(), seed=1), randomized(micro(), seed=2)
    ckpt.save_checkpoint(tmp_path, 10, lambda d: save_tokenizer(first, d))
    ckpt.save_checkpoint(tmp_path, 20, lambda d: save_tokenizer(second, d))
    assert tokenizer_identity(load_tokenizer(tmp_path)) == tokenizer_identity(second)


def _one_line_error(path, pattern):
    with pytest.raises(ReelmError, match=pattern) as err:
        load_tokenizer(path)
    assert "\n" not in str(err.value)


def test_mismatched_and_corrupt_checkpoints_are_clear_errors(tmp_path):
    model = randomized(micro())
    folder = save_tokenizer(model, tmp_path / "tok")
    weights, meta_path = folder / "model.safetensors", folder / "reelm.json"
    good_weights, good_meta = weights.read_bytes(), meta_path.read_text()

    meta = json.loads(good_meta)
    meta["config"]["channels"] = [8, 16, 32]
    meta_path.write_text(json.dumps(meta))
    _one_line_error(folder, r"weights do not match the saved config \(\d+ with another shape")

    meta["config"] = {**json.loads(good_meta)["config"], "widths": [1]}
    meta_path.write_text(json.dumps(meta))
    _one_line_error(folder, "saved tokenizer config is unusable .*unknown config keys")

    meta_path.write_text(good_meta)
    state = load_file(str(weights))
    state["decoder.conv_out.space.conv.bias"] += 1
    save_file(state, str(weights))
    _one_line_error(folder, "fingerprint mismatch")

    weights.write_bytes(good_weights[: len(good_weights) // 2])
    _one_line_error(folder, "model.safetensors: cannot read tokenizer weights")

    weights.write_bytes(good_weights)
    meta_path.write_text(good_meta.replace('"video_tokenizer"', '"lm"'))
    _one_line_error(folder, "expected 'video_tokenizer'")
    _one_line_error(tmp_path / "nowhere", "not found")


def test_identity_check_refuses_codes_of_another_tokenizer():
    model = randomized(micro(), seed=1)
    identity = tokenizer_identity(model)
    with pytest.raises(TokenizerMismatchError, match="codes.npz: made by another tokenizer .*fingerprint"):
        check_identity(identity, randomized(micro(), seed=2), source="codes.npz")
    with pytest.raises(TokenizerMismatchError, match="codebook_size 7 != 64"):
        check_identity({**identity, "codebook_size": 7}, model)
    with pytest.raises(TokenizerMismatchError, match="identity_version"):
        check_identity({k: v for k, v in identity.items() if k != "identity_version"}, model)


def test_the_weight_fingerprint_is_computed_once_on_load_not_on_every_identity_check(tmp_path, monkeypatch):
    import reelm.tokenizer.tokenizer_checkpoint as checkpoint_module
    import reelm.tokenizer.model as model_module

    torch.manual_seed(0)
    save_tokenizer(VideoTokenizer(PRESETS["tiny"]()).eval(), tmp_path / "tok")
    calls = []
    real = model_module.fingerprint

    def counting(state):
        calls.append(1)
        return real(state)

    monkeypatch.setattr(model_module, "fingerprint", counting)
    monkeypatch.setattr(checkpoint_module, "fingerprint", counting)
    model = load_tokenizer(tmp_path / "tok")
    assert len(calls) == 1  # verifying the file against reelm.json
    for _ in range(3):
        identity = tokenizer_identity(model)
        check_identity(identity, model)
        with torch.no_grad():
            model.encode(torch.zeros(1, 3, 5, 32, 32))
    assert len(calls) == 1
    model.train()  # the way reelm changes weights: the kept fingerprint is forgotten
    tokenizer_identity(model)
    assert len(calls) == 2
    # The loaded model does not carry the training objective (pre-0.2 configs held it): no loss code loaded.
    assert "loss" not in to_dict(model.cfg)


def test_a_tokenizer_saved_before_the_objective_moved_out_still_loads(tmp_path):
    from reelm.tokenizer.losses import LOSS_PRESETS

    torch.manual_seed(0)
    model = VideoTokenizer(PRESETS["tiny"]()).eval()
    save_tokenizer(model, tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "reelm.json").read_text())
    meta["config"]["loss"] = to_dict(LOSS_PRESETS["small"]())  # what 0.1 wrote into the model config
    (tmp_path / "old" / "reelm.json").write_text(json.dumps(meta))
    again = load_tokenizer(tmp_path / "old")
    assert to_dict(again.cfg) == to_dict(model.cfg)


def test_a_shortcut_first_used_under_inference_mode_still_trains_after():
    """The shortcut's cached group-mean matrix is made outside inference mode even when a generation asks for it
    first, so a training step later in the same process can still backpropagate through it."""
    from reelm.tokenizer.layers import _group_mean_matrix, match_channels

    _group_mean_matrix.cache_clear()
    with torch.inference_mode():
        match_channels(torch.randn(1, 6, 2, 2), 4)  # 6 -> 4 channels: not a multiple, the cached matrix
    x = torch.randn(1, 6, 2, 2, requires_grad=True)
    match_channels(x, 4).pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
