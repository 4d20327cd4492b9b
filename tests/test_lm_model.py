"""The LM: presets, attention backends agree, packed documents never attend to each other."""

import importlib.util

import pytest
import torch

from reelm.errors import ReelmError
from reelm.lm.flops import flops_per_token, non_embedding_parameters
from reelm.lm.model import PRESETS, build_model, compile_layers, preset, select_attention

VOCAB = 1000


def _model(attn: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(preset("tiny"), VOCAB, bos_id=1, eos_id=2, pad_id=0, attn_implementation=attn).eval()


@pytest.mark.parametrize(
    "name, low, high", [("tiny", 1e6, 5e6), ("small", 20e6, 50e6), ("base", 250e6, 350e6), ("large", 0.8e9, 1.2e9)]
)
def test_preset_sizes(name, low, high):
    with torch.device("meta"):
        model = build_model(PRESETS[name](), 8192, bos_id=1, eos_id=2, pad_id=0, device="meta")
    assert low <= non_embedding_parameters(model) <= high
    assert model.config.vocab_size % 64 == 0 and model.config.vocab_size >= 8192
    assert flops_per_token(model, 1024) > 6 * non_embedding_parameters(model)


def test_attention_is_chosen_once_from_the_device():
    assert select_attention("cpu") == "sdpa"
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn"):
        assert select_attention("cuda") == "flash_attention_2"


def test_sdpa_and_eager_give_the_same_logits():
    ids = torch.randint(3, VOCAB, (2, 40))
    sdpa, eager = _model("sdpa"), _model("eager")
    eager.load_state_dict(sdpa.state_dict())
    with torch.no_grad():
        a = sdpa(input_ids=ids, use_cache=False).logits
        b = eager(input_ids=ids, use_cache=False).logits
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(
    not (torch.cuda.is_available() and importlib.util.find_spec("flash_attn")), reason="needs CUDA and flash-attn"
)
def test_flash_attention_matches_sdpa_on_gpu():
    ids = torch.randint(3, VOCAB, (2, 64), device="cuda")
    sdpa = _model("sdpa").to("cuda", torch.bfloat16)
    flash = _model("flash_attention_2").to("cuda", torch.bfloat16)
    flash.load_state_dict(sdpa.state_dict())
    with torch.no_grad():
        a = sdpa(input_ids=ids, use_cache=False).logits.float()
        b = flash(input_ids=ids, use_cache=False).logits.float()
    torch.testing.assert_close(a, b, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_documents_do_not_attend_across(attn):
    model = _model(attn)
    doc_a, doc_b = torch.randint(3, VOCAB, (1, 23)), torch.randint(3, VOCAB, (1, 17))
    packed = torch.cat([doc_a, doc_b], dim=1)
    position_ids = torch.cat([torch.arange(23), torch.arange(17)]).unsqueeze(0)
    with torch.no_grad():
        logits = model(input_ids=packed, position_ids=position_ids, use_cache=False).logits
        alone = model(input_ids=doc_b, use_cache=False).logits
        # Without the position reset, doc B does see doc A: the check above can fail.
        leaky = model(input_ids=packed, use_cache=False).logits
    torch.testing.assert_close(logits[:, 23:], alone, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(leaky[:, 23:], alone, atol=1e-3)


def test_compiling_layers_on_a_cpu_without_a_cxx_compiler_says_so_and_changes_nothing():
    from torch._inductor import config as inductor_config

    model = _model("sdpa")
    with inductor_config.patch({"cpp.cxx": (None, "no-such-c++-compiler")}):
        with pytest.raises(ReelmError, match="needs a C\\+\\+ compiler"):
            compile_layers(model)
    assert all(layer._compiled_call_impl is None for layer in model.model.layers)
