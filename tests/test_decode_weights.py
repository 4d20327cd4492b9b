"""The decode step's weight formats (reelm.lm.decode_weights): packed projections against the model's own, the
engine over them (layout, per-sample independence, stats, packing once), their one-line errors, and the
``--weights`` flag from the command line to the sidecar."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import make_model_folder
from reelm.cli import main
from reelm.data.text_tokenizer import train_text_tokenizer
from reelm.data.token_layout import TokenLayout
from reelm.lm.decode_step import DecodeStepError, make_step
from reelm.lm.decode_weights import (PACKED_FORMATS, DecodeWeights, Projection, WeightFormatError, bytes_per_weight,
                                     check_format)
from reelm.lm.engine import GenerationEngine, GenerationError, Request
from reelm.lm.model import LMConfig, build_model, layout_grid
from reelm.lm.sampling import Sampling

# A projection's output moves by about 2e-4 of its norm in fp16 and 1 % in int8 (the module docstring); the
# bounds leave room for the shapes drawn here, and each is far below what a wrong packing gives (~1.4).
RELATIVE_ERROR = {"fp16": 1e-3, "int8": 3e-2}


@pytest.fixture(scope="module", autouse=True)
def _isolated(single_thread_isolated):
    yield


@pytest.fixture(scope="module")
def layout():
    captions = [f"a {c} {s} moves {m}" for c in ("red", "blue") for s in ("circle", "square") for m in ("left", "up")]
    return TokenLayout.build(train_text_tokenizer(captions * 3, vocab_size=300), codebook_size=64, latent_hw=(2, 3))


@pytest.fixture(scope="module", params=[False, True], ids=["llama", "video_positions"])
def model(layout, request):
    torch.manual_seed(0)
    cfg = LMConfig(hidden_size=64, num_layers=2, num_heads=4, max_position_embeddings=512,
                   video_positions=request.param)
    return build_model(cfg, layout.vocab_size, bos_id=layout.bos_id, eos_id=layout.eos_id, pad_id=layout.pad_id,
                       attn_implementation="sdpa", grid=layout_grid(layout)).eval()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.mark.parametrize("fmt", PACKED_FORMATS)
def test_a_packed_projection_multiplies_as_its_matrices_side_by_side(fmt):
    torch.manual_seed(1)
    weights = [torch.randn(48, 96) * 0.05, torch.randn(32, 96) * 0.02, torch.randn(16, 96)]
    x = torch.randn(5, 96)
    projection = Projection(weights, fmt)
    y = projection(x)
    assert y.shape == (5, 96) and y.dtype == torch.float32
    expected = x @ torch.cat(weights).t()
    assert relative_error(y, expected) < RELATIVE_ERROR[fmt]
    for part, weight in zip(projection.split(y), weights):  # each matrix's own columns, each within the bound
        assert relative_error(part, x @ weight.t()) < RELATIVE_ERROR[fmt]
    assert projection.nbytes == (expected.shape[1] * 96 * (2 if fmt == "fp16" else 1)
                                 + (expected.shape[1] * 2 if fmt == "int8" else 0))
    rows = torch.cat([projection(x[i:i + 1]) for i in range(5)])  # a row's output does not depend on the others
    assert relative_error(rows, y) < 1e-6  # beyond float rounding (which the fp32 matrix product shares)


def test_the_model_format_is_the_models_own_matrix_product():
    weight = torch.randn(24, 16)
    x = torch.randn(3, 16)
    projection = Projection([weight], "model")
    assert torch.equal(projection(x), torch.mm(x, weight.t())) and projection.nbytes == 24 * 16 * 4
    assert bytes_per_weight("model", torch.float32) == 4 and bytes_per_weight("model", torch.bfloat16) == 2
    assert bytes_per_weight("fp16", torch.float32) == 2 and bytes_per_weight("int8", torch.float32) == 1


@pytest.mark.parametrize("fmt", PACKED_FORMATS)
def test_the_lean_step_over_packed_weights_stays_close_to_the_models_own(model, layout, fmt):
    """The final hidden states of a prompt's next few ids, stepped through the same cache contents."""
    from transformers import StaticCache

    from reelm.lm.decode_step import CACHE_ARGUMENT

    prompt = torch.from_numpy(layout.prompt("t2v", text="a red circle moves left"))[None]
    outputs = {}
    for name, weights in (("model", None), (fmt, DecodeWeights(model, fmt))):
        cache = StaticCache(config=model.config, max_cache_len=prompt.shape[1] + 4)
        with torch.inference_mode():
            model(input_ids=prompt, use_cache=True, **{CACHE_ARGUMENT: cache})
            step = make_step("lean", model, cache, prompt.shape[1] + 4, weights)
            codes = torch.tensor([layout.code_offset + 3])
            grid = torch.tensor([0])
            outputs[name] = torch.stack([step(codes, torch.tensor([prompt.shape[1] + i]), prompt.shape[1] + i, None,
                                              grid + i) for i in range(4)])
    assert relative_error(outputs[fmt], outputs["model"]) < 5 * RELATIVE_ERROR[fmt]


@pytest.mark.parametrize("fmt", PACKED_FORMATS)
def test_the_engine_over_packed_weights_follows_the_layout_and_keeps_samples_independent(model, layout, fmt):
    engine = GenerationEngine(model, layout, weights=fmt)
    requests = [Request(layout.prompt("t2v", text="a red circle moves left"), frames=2),
                Request(layout.prompt("i2v", text="a blue square", image=np.zeros((1, 2, 3), dtype=np.int64)),
                        frames=2)]
    result = engine.generate(requests, sampling=Sampling(temperature=1.2), seed=[3, 4], cfg_scale=2.0)
    for sample in result.samples:
        assert layout.parse(sample.sequence).video.shape[1:] == (2, 3)
    assert result.stats.weights == fmt and result.stats.step == "lean" and result.stats.to_dict()["weights"] == fmt
    alone = engine.generate(requests[:1], sampling=Sampling(temperature=1.2), seed=[3], cfg_scale=2.0)
    assert np.array_equal(alone.samples[0].ids, result.samples[0].ids)  # its ids do not depend on its batch
    caption = engine.generate([Request(layout.prompt("v2t", video=np.zeros((1, 2, 3), dtype=np.int64)),
                                       max_text_tokens=4)], seed=0)
    assert len(layout.parse(caption.samples[0].sequence).text_ids) <= 4
    packed = engine._packed
    engine.generate(requests[:1], seed=0)
    assert engine._packed is packed  # packed once, at the first decode
    assert GenerationEngine(model, layout).generate(requests[:1], seed=0).stats.weights == "model"


def test_weight_formats_are_refused_in_one_line_where_they_cannot_run(model, layout):
    with pytest.raises(GenerationError, match="weights 'int4': choose from model, fp16, int8"):
        GenerationEngine(model, layout, weights="int4")
    with pytest.raises(GenerationError, match="weights int8: only the lean decode step reads them"):
        GenerationEngine(model, layout, step="layers", weights="int8")
    with pytest.raises(WeightFormatError, match="weights fp16: a CPU format; on a CUDA, load the model in bf16"):
        check_format("fp16", "cuda")
    check_format("model", "cuda")  # the model's own weights run anywhere
    from transformers import StaticCache

    cache = StaticCache(config=model.config, max_cache_len=8)
    with pytest.raises(DecodeStepError, match="weights fp16: only the lean decode step reads them"):
        make_step("layers", model, cache, 8, DecodeWeights(model, "fp16"))


def test_the_weights_flag_reaches_the_engine_and_the_sidecar(tmp_path, capsys):
    folder = make_model_folder(tmp_path / "model")
    out = tmp_path / "out.mp4"
    assert main(["generate", "a red circle moves to the left", "--model", str(folder), "-o", str(out),
                 "--weights", "int8", "--no-progress"]) == 0
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["weights"] == "int8"
    with pytest.raises(SystemExit) as exit_code:
        main(["generate", "a red circle", "--model", str(folder), "-o", str(out), "--weights", "int4"])
    assert exit_code.value.code == 2 and "invalid choice: 'int4'" in capsys.readouterr().err


def test_bench_decode_weights_reports_speed_agreement_and_adherence_per_format(tmp_path, capsys):
    from conftest import load_bench_script

    folder = make_model_folder(tmp_path / "model")
    bench = load_bench_script("bench_decode_weights")
    capsys.readouterr()  # what making the folder printed (DeepSpeed's accelerator line)
    assert bench.main(["--model", str(folder), "--formats", "int8", "--num-prompts", "2", "--batch-size", "2",
                       "--repeats", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["formats"]) == ["model", "int8"] and report["prompts"] == 4  # the reference is always run
    model, int8 = report["formats"]["model"], report["formats"]["int8"]
    assert model["token_agreement"] == 1.0 and model["over_model"] == 1.0
    assert 0.0 <= int8["token_agreement"] <= 1.0 and len(int8["seconds_all"]) == 2
    assert int8["tokens"] == model["tokens"] and int8["tokens_per_s"] == pytest.approx(
        int8["tokens"] / int8["seconds"], rel=1e-2)
    color = model["adherence"]["all"]["color"]
    assert color["total"] == 4 and color["interval"][0] <= color["accuracy"] <= color["interval"][1]
