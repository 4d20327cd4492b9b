"""Token-level generation: the layout's generation plans, the engine (constraints, guidance, cache, batching,
seeds, finished rows) against an uncached reference, the LogitsProcessor inside plain generate(), and the
generation benchmark end to end (tiny settings; not a timing test)."""

import json

import numpy as np
import pytest
import torch

from conftest import load_bench_script
from reelm.data.text_tokenizer import train_text_tokenizer
from reelm.data.token_layout import LayoutError, Task, TokenLayout
from reelm.lm.constraints import LayoutLogitsProcessor, PlanTable, step_schedule
from reelm.lm.engine import GenerationEngine, GenerationError, Request
from reelm.lm.model import LMConfig, build_model, layout_grid
from reelm.lm.sampling import Sampling, SamplingError

CAPTIONS = [f"a {c} {s} moves {m}" for c in ("red", "blue", "green", "yellow")
            for s in ("circle", "square", "triangle") for m in ("left", "right", "up", "down")]
HW, CODEBOOK = (2, 3), 64
SAMPLINGS = {
    "greedy": Sampling(greedy=True),
    "temperature": Sampling(temperature=1.5),
    "top_k": Sampling(top_k=5),
    "top_p": Sampling(temperature=0.8, top_p=0.7),
    "top_k_top_p": Sampling(top_k=20, top_p=0.5),
}


@pytest.fixture(scope="module", autouse=True)
def _isolated(single_thread_isolated):
    """Every test here (and its module fixtures) on one thread, with the environment restored."""
    yield


@pytest.fixture(scope="module")
def layout():
    """Built as tests/test_lm_train.py::make_shards builds its layout (a grid of 2 x 3 codes per latent frame)."""
    text = train_text_tokenizer(CAPTIONS * 3, vocab_size=300)
    return TokenLayout.build(text, codebook_size=CODEBOOK, latent_hw=HW)


def tiny_model(layout, **overrides):
    torch.manual_seed(0)
    cfg = LMConfig(hidden_size=64, num_layers=2, num_heads=4, max_position_embeddings=512, **overrides)
    return build_model(cfg, layout.vocab_size, bos_id=layout.bos_id, eos_id=layout.eos_id,
                       pad_id=layout.pad_id, attn_implementation="sdpa", grid=layout_grid(layout)).eval()


@pytest.fixture(scope="module", params=[False, True], ids=["llama", "video_positions"])
def model(layout, request):
    """Every engine test runs on a plain Llama and on the Llama with video positions."""
    return tiny_model(layout, video_positions=request.param)


@pytest.fixture(scope="module")
def engine(model, layout):
    return GenerationEngine(model, layout)


def codes(layout, t, seed=0):
    return np.random.default_rng(seed).integers(0, layout.codebook_size, size=(t, *layout.latent_hw))


def requests_of_every_task(layout):
    return [
        Request(layout.prompt("t2v", text="a red circle moves left"), frames=2),
        Request(layout.prompt("i2v", text="a blue square", image=codes(layout, 1, 1)), frames=2),
        Request(layout.prompt("v2v", text="a green triangle moves up", context=codes(layout, 2, 2)), frames=1),
        Request(layout.prompt("uncond"), frames=3),
        Request(layout.prompt("v2t", video=codes(layout, 2, 3)), max_text_tokens=6),
    ]


def check_sample(layout, request, sample):
    parsed = layout.parse(sample.sequence)  # markers, order, code and text ranges, <eos> last
    assert np.array_equal(sample.sequence[: len(request.prompt)], request.prompt)
    if request.frames is not None:
        assert parsed.video.shape == (request.frames, *layout.latent_hw)
        assert len(sample.ids) == request.frames * layout.codes_per_frame + 2
    else:
        assert 0 <= len(parsed.text_ids) <= request.max_text_tokens
        assert isinstance(parsed.text, str)
    return parsed


# ---- the layout's generation plan


def random_walk(layout, plan, prompt, rng, frames=None, max_text_tokens=None):
    """Follow ``plan`` with random allowed ids, checking it against ``allowed_next`` at every position."""
    state, ids = 0, list(prompt)
    while True:
        expected = layout.allowed_next(np.array(ids), frames=frames, max_text_tokens=max_text_tokens)
        assert plan.allowed(state) == expected, (plan.task, state)
        if state == plan.done_state and ids[-1] == layout.pad_id:
            return np.array(ids)
        choices = [token for lo, hi in expected.ranges for token in (lo, hi - 1)]
        early_end = plan.end_id in expected and rng.random() < 0.2
        token = plan.end_id if early_end else int(rng.choice(choices))
        state = plan.advance(state, token)
        ids.append(token)


@pytest.mark.parametrize("seed", range(3))
def test_generation_plan_agrees_with_allowed_next_at_every_position(layout, seed):
    rng = np.random.default_rng(seed)
    for request in requests_of_every_task(layout):
        plan = layout.generation_plan(request.prompt, frames=request.frames, max_text_tokens=request.max_text_tokens)
        ids = random_walk(layout, plan, request.prompt, rng, request.frames, request.max_text_tokens)
        assert plan.max_new_tokens >= len(ids) - len(request.prompt) - 1  # the last id is a <pad>
        check_sample(layout, request, type("S", (), {"sequence": ids[:-1], "ids": ids[len(request.prompt):-1]})())


def test_generation_plan_shape_and_errors(layout):
    prompt = layout.prompt("t2v", text="a red circle")
    plan = layout.generation_plan(np.concatenate([[layout.pad_id] * 3, prompt]), frames=2)  # left pads ignored
    per_frame = layout.codes_per_frame
    assert plan.max_new_tokens == 2 * per_frame + 2 and plan.eos_state == 2 * per_frame + 1
    assert len(plan.sets) == 4  # codes, <eov>, <eos>, <pad>
    text_plan = layout.generation_plan(layout.prompt("v2t", video=codes(layout, 1)), max_text_tokens=3)
    assert text_plan.allowed(3).ranges == ((layout.eot_id, layout.eot_id + 1),)
    assert text_plan.advance(1, layout.eot_id) == text_plan.eos_state
    with pytest.raises(LayoutError, match="not allowed at step 0"):
        plan.advance(0, layout.eov_id)
    with pytest.raises(LayoutError, match="must end with the <|bov|>"):
        layout.generation_plan(prompt[:-1], frames=2)
    with pytest.raises(LayoutError, match="must end with the"):
        layout.generation_plan(np.concatenate([prompt, [layout.code_offset]]), frames=2)
    with pytest.raises(LayoutError, match="frames: expected a positive integer"):
        layout.generation_plan(prompt)
    with pytest.raises(LayoutError, match="max_text_tokens is for a text target"):
        layout.generation_plan(prompt, frames=1, max_text_tokens=4)


def test_unconditional_prompt_is_the_empty_text_prompt(layout):
    image, context = codes(layout, 1), codes(layout, 2)
    for task, inputs in (("t2v", {}), ("i2v", {"image": image}), ("v2v", {"context": context})):
        prompt = layout.prompt(task, text="a red circle moves left", **inputs)
        assert np.array_equal(layout.unconditional_prompt(prompt), layout.prompt(task, text=None, **inputs))
    for prompt in (layout.prompt("v2t", video=context), layout.prompt("uncond")):
        with pytest.raises(LayoutError, match="no text condition"):
            layout.unconditional_prompt(prompt)


def test_step_schedule_and_plan_table_follow_the_plans(layout):
    video = layout.generation_plan(layout.prompt("t2v", text="a red circle"), frames=1)
    text = layout.generation_plan(layout.prompt("v2t", video=codes(layout, 1)), max_text_tokens=2)
    per_frame = layout.codes_per_frame
    schedule = step_schedule([video, video])
    assert schedule.ranges[0] == (layout.code_offset, layout.vocab_size) and all(schedule.exact)
    assert schedule.forced[per_frame:] == (True, True) and not schedule.needs_forward(per_frame - 1)
    mixed = step_schedule([video, text])
    assert len(mixed) == per_frame + 2 and not any(mixed.forced) and not any(mixed.exact)
    assert mixed.ranges[0] == (0, layout.vocab_size)
    table = PlanTable([video, text, video], width=layout.vocab_size + 5)
    states = table.start.clone()
    assert table.allowed(states)[:, layout.vocab_size:].sum() == 0  # padded vocabulary ids never allowed
    ids = torch.tensor([layout.code_offset, layout.eot_id, layout.code_offset + 1])
    assert table.is_allowed(states, ids).all() and not table.is_allowed(states, ids[[1, 0, 1]]).any()
    states = table.advance(states, ids)
    assert table.allowed(states)[1].nonzero().flatten().tolist() == [layout.eos_id]
    states = table.advance(states, torch.tensor([layout.code_offset, layout.eos_id, layout.code_offset]))
    assert bool(states[1] == table.row_done[1])


# ---- the engine


@pytest.mark.parametrize("cfg_scale", [1.0, 0.0, 3.0])
@pytest.mark.parametrize("name", list(SAMPLINGS))
def test_every_sample_follows_the_layout(engine, layout, name, cfg_scale):
    requests = requests_of_every_task(layout)
    if cfg_scale != 1:
        requests = requests[:3]  # the tasks with a text condition
    result = engine.generate(requests, sampling=SAMPLINGS[name], cfg_scale=cfg_scale, num_samples=2, seed=7)
    assert [(s.request, s.sample) for s in result.samples] == [(r, s) for r in range(len(requests)) for s in (0, 1)]
    for sample in result.samples:
        check_sample(layout, requests[sample.request], sample)
    for row, sample in zip(result.ids, result.samples):
        assert np.array_equal(row[: len(sample.ids)], sample.ids)
        assert (row[len(sample.ids):] == layout.pad_id).all()
    stats = result.stats
    assert stats.tokens == sum(len(s.ids) for s in result.samples) and stats.samples == len(requests) * 2
    assert stats.model_rows == stats.samples * (1 if cfg_scale == 1 else 2)
    assert stats.tokens_per_s == pytest.approx(stats.tokens / (stats.prefill_s + stats.decode_s))


def reference_greedy(model, layout, request, cfg_scale=1.0):
    """Greedy decoding without a cache: the whole sequence through the model for every id, masked by allowed_next."""
    ids = list(request.prompt)
    uncond = list(layout.unconditional_prompt(request.prompt)) if cfg_scale != 1 else None
    generated = []
    while not generated or generated[-1] != layout.eos_id:
        logits = model(torch.tensor([ids + generated])).logits[0, -1]
        if uncond is not None:
            other = model(torch.tensor([uncond + generated])).logits[0, -1]
            logits = other + cfg_scale * (logits - other)
        allowed = layout.allowed_next(np.array(ids + generated), frames=request.frames,
                                      max_text_tokens=request.max_text_tokens).mask(len(logits))
        generated.append(int(logits.masked_fill(~torch.from_numpy(allowed), float("-inf")).argmax()))
    return np.array(generated)


@pytest.mark.parametrize("cfg_scale", [1.0, 2.5])
def test_greedy_with_the_cache_equals_greedy_without(engine, model, layout, cfg_scale):
    requests = requests_of_every_task(layout)[: 3 if cfg_scale != 1 else 5]
    result = engine.generate(requests, sampling=Sampling(greedy=True), cfg_scale=cfg_scale)
    with torch.inference_mode():
        for request, sample in zip(requests, result.samples):
            assert np.array_equal(sample.ids, reference_greedy(model, layout, request, cfg_scale))


def test_cfg_scale_one_is_no_guidance_and_zero_is_the_unconditional_prompt(engine, layout):
    request = requests_of_every_task(layout)[0]
    settings = dict(sampling=Sampling(top_k=10), num_samples=3, seed=11)
    plain = engine.generate([request], **settings)
    one = engine.generate([request], cfg_scale=1.0, **settings)
    assert plain.stats.model_rows == one.stats.model_rows == 3
    assert np.array_equal(plain.ids, one.ids)
    greedy = Sampling(greedy=True)
    zero = engine.generate([request], sampling=greedy, cfg_scale=0.0)
    uncond = engine.generate([Request(layout.unconditional_prompt(request.prompt), frames=2)], sampling=greedy)
    assert np.array_equal(zero.samples[0].ids, uncond.samples[0].ids)
    explicit = engine.generate([Request(request.prompt, frames=2, unconditional_prompt=layout.prompt("t2v"))],
                               sampling=greedy, cfg_scale=0.0)
    assert np.array_equal(explicit.ids, zero.ids)


def test_same_seed_same_samples(engine, layout):
    requests = requests_of_every_task(layout)
    settings = dict(sampling=Sampling(top_p=0.9), num_samples=2)
    first = engine.generate(requests, seed=3, **settings)
    assert np.array_equal(first.ids, engine.generate(requests, seed=3, **settings).ids)
    assert not np.array_equal(first.ids, engine.generate(requests, seed=4, **settings).ids)
    generator = torch.Generator().manual_seed(3)
    assert np.array_equal(first.ids, engine.generate(requests, generator=generator, **settings).ids)
    assert first.stats.seed == 3 and engine.generate(requests[:1], **settings).stats.seed is not None


@pytest.mark.parametrize("cfg_scale", [1.0, 2.0])
def test_one_seed_per_sample_makes_each_sample_independent_of_its_batch(engine, layout, cfg_scale):
    """With a seed per sample, a sampled row draws the same ids alone or among others (text rows that finish
    and are dropped early included)."""
    requests = [Request(layout.prompt("t2v", text="a red circle moves left"), frames=2),
                Request(layout.prompt("t2v", text="a blue square"), frames=2)]
    settings = dict(sampling=Sampling(top_p=0.9), cfg_scale=cfg_scale)
    together = engine.generate(requests, seed=[11, 12, 13, 14], num_samples=2, **settings)
    assert together.stats.seed == [11, 12, 13, 14]
    for index, request in enumerate(requests):
        for k in range(2):
            alone = engine.generate([request], seed=[11 + 2 * index + k], **settings)
            assert np.array_equal(together.samples[2 * index + k].ids, alone.samples[0].ids)
    assert not np.array_equal(together.samples[0].ids, together.samples[1].ids)
    video = codes(layout, 1)
    captions = [Request(layout.prompt("v2t", video=video), max_text_tokens=2),
                Request(layout.prompt("v2t", video=video), max_text_tokens=9)]
    both = GenerationEngine(engine.model, layout, check_every=1).generate(captions, seed=[5, 6],
                                                                           sampling=Sampling(temperature=1.5))
    alone = engine.generate(captions[1:], seed=[6], sampling=Sampling(temperature=1.5))
    assert np.array_equal(both.samples[1].ids, alone.samples[0].ids)
    with pytest.raises(GenerationError, match="3 seeds for 4 samples"):
        engine.generate(requests, seed=[1, 2, 3], num_samples=2)


@pytest.mark.parametrize("cfg_scale", [1.0, 2.0])
def test_batched_prompts_equal_one_by_one_under_greedy(engine, layout, cfg_scale):
    requests = requests_of_every_task(layout)[: 3 if cfg_scale != 1 else 5]  # prompts of different lengths
    assert len({len(r.prompt) for r in requests}) > 1
    batched = engine.generate(requests, sampling=Sampling(greedy=True), cfg_scale=cfg_scale, num_samples=2)
    for index, request in enumerate(requests):
        alone = engine.generate([request], sampling=Sampling(greedy=True), cfg_scale=cfg_scale)
        for sample in batched.samples[2 * index: 2 * index + 2]:
            assert np.array_equal(sample.ids, alone.samples[0].ids)


def test_i2v_and_v2v_generate_the_remaining_frames(engine, layout):
    image, context = codes(layout, 1, 5), codes(layout, 3, 6)
    requests = [Request(layout.prompt("i2v", text="a red circle", image=image), frames=3),
                Request(layout.prompt("v2v", text="a blue square", context=context), frames=2)]
    result = engine.generate(requests, sampling=Sampling(top_k=8), cfg_scale=2.0, seed=0)
    i2v, v2v = (check_sample(layout, r, s) for r, s in zip(requests, result.samples))
    assert np.array_equal(i2v.image, image) and i2v.full_video().shape == (4, *HW)
    assert np.array_equal(v2v.context, context) and v2v.full_video().shape == (5, *HW)


def test_v2t_text_is_capped_and_decodes(engine, layout):
    request = Request(layout.prompt("v2t", video=codes(layout, 2)), max_text_tokens=4)
    result = engine.generate([request], sampling=Sampling(temperature=2.0), num_samples=4, seed=1)
    for sample in result.samples:
        parsed = check_sample(layout, request, sample)
        assert parsed.text == layout.decode_text(parsed.text_ids)
        assert sample.ids[-2:].tolist() == [layout.eot_id, layout.eos_id]


def test_finished_rows_are_padded_and_dropped(model, layout):
    video = codes(layout, 1)
    requests = [Request(layout.prompt("v2t", video=video), max_text_tokens=1),
                Request(layout.prompt("t2v", text="a red circle"), frames=3),
                Request(layout.prompt("v2t", video=video), max_text_tokens=9)]
    greedy = Sampling(greedy=True)
    dropping = GenerationEngine(model, layout, check_every=1).generate(requests, sampling=greedy, cfg_scale=1.0)
    keeping = GenerationEngine(model, layout, check_every=10**6).generate(requests, sampling=greedy)
    assert np.array_equal(dropping.ids, keeping.ids)
    assert len(dropping.samples[0].ids) <= 3 and (dropping.ids[0, 3:] == layout.pad_id).all()
    guided = GenerationEngine(model, layout, check_every=1).generate(
        [Request(layout.prompt("t2v", text="a red circle"), frames=1), requests[0]], sampling=greedy, cfg_scale=1.0)
    assert (guided.ids[1, len(guided.samples[1].ids):] == layout.pad_id).all()
    only_text = GenerationEngine(model, layout, check_every=2).generate([requests[0]], sampling=greedy)
    assert only_text.stats.steps <= 4  # stops once every row has its <eos>


def test_lean_step_equals_the_models_own_layers(model, layout):
    requests = requests_of_every_task(layout)
    for cfg_scale in (1.0, 2.0):
        chosen = requests if cfg_scale == 1 else requests[:3]
        runs = [GenerationEngine(model, layout, step=kind).generate(chosen, sampling=Sampling(greedy=True),
                                                                     cfg_scale=cfg_scale, num_samples=2)
                for kind in ("lean", "layers")]
        assert [run.stats.step for run in runs] == ["lean", "layers"]
        assert np.array_equal(runs[0].ids, runs[1].ids)


def test_grouped_query_attention_model(layout):
    model = tiny_model(layout, num_kv_heads=2)
    requests = requests_of_every_task(layout)[:3]
    lean = GenerationEngine(model, layout).generate(requests, sampling=Sampling(greedy=True), cfg_scale=2.0)
    with torch.inference_mode():
        for request, sample in zip(requests, lean.samples):
            assert np.array_equal(sample.ids, reference_greedy(model, layout, request, 2.0))


def test_the_engine_never_walks_the_prefix(engine, layout, monkeypatch):
    walks, original = [], TokenLayout._walk
    monkeypatch.setattr(TokenLayout, "_walk", lambda self, ids: walks.append(len(ids)) or original(self, ids))
    monkeypatch.setattr(TokenLayout, "allowed_next", None)
    prompt = layout.prompt("t2v", text="a red circle")
    counts = []
    for frames in (1, 4):
        walks.clear()
        engine.generate([Request(prompt, frames=frames)], sampling=Sampling(top_k=5), cfg_scale=2.0, seed=0)
        counts.append(walks[:])
    assert counts[0] == counts[1] == [len(prompt)] * len(counts[0])  # only the prompts, once each, while planning


def test_progress_is_reported_every_step(engine, layout):
    seen = []
    result = engine.generate(requests_of_every_task(layout)[:1], progress=seen.append, seed=0)
    assert [p.step for p in seen] == list(range(1, result.stats.steps + 1))
    assert all(p.steps == result.stats.steps and p.rows == 1 for p in seen)
    assert seen[-1].elapsed_s >= seen[0].elapsed_s


def test_bad_requests_and_settings_raise_one_line_errors(engine, model, layout):
    t2v = layout.prompt("t2v", text="a red circle")
    v2t = layout.prompt("v2t", video=codes(layout, 1))
    cases = [
        (dict(requests=[]), "no requests"),
        (dict(requests=[Request(t2v)]), "request 0: t2v prompt: frames"),
        (dict(requests=[Request(t2v[:-1], frames=1)]), "request 0: t2v prompt: must end"),
        (dict(requests=[Request(v2t, max_text_tokens=3)], cfg_scale=2.0), "no text condition"),
        (dict(requests=[Request(t2v, frames=1, unconditional_prompt=v2t)], cfg_scale=2.0), "classifier-free"),
        (dict(requests=[Request(t2v, frames=1)], num_samples=0), "num_samples"),
        (dict(requests=[Request(t2v, frames=1)], cfg_scale=-1.0), "cfg_scale"),
        (dict(requests=[Request(t2v, frames=1000)]), "exceed the model's 512 positions"),
        (dict(requests=[t2v]), "expected a reelm.lm.engine.Request"),
    ]
    for kwargs, message in cases:
        with pytest.raises(GenerationError, match=message) as caught:
            engine.generate(**kwargs)
        assert "\n" not in str(caught.value)
    for bad in (dict(temperature=-1), dict(top_k=0), dict(top_p=0.0), dict(top_p=1.5)):
        with pytest.raises(SamplingError):
            Sampling(**bad)
    with pytest.raises(GenerationError, match="step 'fast'"):
        GenerationEngine(model, layout, step="fast")


# ---- plain generate() with the LogitsProcessor


def left_padded(layout, prompts):
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), layout.pad_id)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.from_numpy(prompt)
    return ids, (ids != layout.pad_id).long()


@pytest.mark.parametrize("seed", range(3))
def test_logits_processor_keeps_plain_generate_on_the_layout(model, layout, seed):
    video = [Request(layout.prompt("t2v", text="a red circle moves left"), frames=2),
             Request(layout.prompt("i2v", text="a square", image=codes(layout, 1)), frames=2),
             Request(layout.prompt("uncond"), frames=2)]
    text = [Request(layout.prompt("v2t", video=codes(layout, 1, 4)), max_text_tokens=5),
            Request(layout.prompt("v2t", video=codes(layout, 2, 5)), max_text_tokens=5)]
    for requests, kwargs in ((video, {"frames": 2}), (text, {"max_text_tokens": 5})):
        ids, mask = left_padded(layout, [r.prompt for r in requests])
        plan = layout.generation_plan(requests[0].prompt, **kwargs)
        torch.manual_seed(seed)
        out = model.generate(ids, attention_mask=mask, do_sample=True, top_k=30, temperature=1.3,
                             max_new_tokens=plan.max_new_tokens, num_return_sequences=2,
                             logits_processor=[LayoutLogitsProcessor(layout, **kwargs)])
        for row, sequence in enumerate(out.numpy()):
            request = requests[row // 2]
            sequence = sequence[sequence != layout.pad_id]
            generated = sequence[len(request.prompt):]
            check_sample(layout, request, type("S", (), {"sequence": sequence, "ids": generated})())


def test_logits_processor_greedy_equals_the_engine(engine, model, layout):
    every = requests_of_every_task(layout)
    ids, _ = left_padded(layout, [r.prompt for r in every])
    with pytest.raises(LayoutError, match="row 4: v2t prompt: frames is for a video target"):
        LayoutLogitsProcessor(layout, frames=2)(ids, torch.zeros(len(ids), model.config.vocab_size))
    requests = [Request(r.prompt, frames=2) for r in every[:4]]
    ids, mask = left_padded(layout, [r.prompt for r in requests])
    processor = LayoutLogitsProcessor(layout, frames=2)
    walks = []
    processor._walk = walks.append  # the O(1) path must serve every call of an ordinary generate()
    out = model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=2 * layout.codes_per_frame + 2,
                         logits_processor=[processor])
    assert walks == []
    result = engine.generate(requests, sampling=Sampling(greedy=True))
    for row, sample in enumerate(result.samples):
        assert np.array_equal(out[row, ids.shape[1]:].numpy(), sample.ids)


def test_logits_processor_walks_ids_it_did_not_see_and_rejects_foreign_ones(layout):
    prompt = torch.from_numpy(layout.prompt("t2v", text="a red circle"))[None]
    width = layout.vocab_size
    processor = LayoutLogitsProcessor(layout, frames=1)
    processor(prompt, torch.zeros(1, width))
    ahead = torch.cat([prompt, torch.full((1, 3), layout.code_offset)], dim=1)  # three ids in one call
    scores = processor(ahead, torch.zeros(1, width))
    assert torch.isfinite(scores[0]).nonzero().flatten().tolist() == list(range(layout.code_offset, width))
    bad = torch.cat([ahead, torch.tensor([[layout.eos_id, layout.code_offset]])], dim=1)
    with pytest.raises(LayoutError, match="<\\|eos\\|> at position"):
        processor(bad, torch.zeros(1, width))


# ---- the benchmark


def test_bench_generate_runs_end_to_end(capsys):
    bench = load_bench_script("bench_generate")
    bench.main(["--presets", "tiny", "--frames", "2", "--latent-hw", "2,4", "--text-vocab", "300",
                "--codebook", "64", "--repeats", "2", "--batch", "2", "--threads", "1", "--top-k", "10"])
    report = json.loads(capsys.readouterr().out)
    tiny = report["presets"]["tiny"]
    tokens = 2 * 8 + 2
    assert report["settings"]["tokens_per_video"] == tokens and report["environment"]["threads"] == 1
    for path in ("reelm", "hf_generate", "reelm_cfg", "reelm_batch", "reelm_samples"):
        figures = tiny[path]
        assert len(figures["seconds_all"]) == 2 and figures["tokens"] > 0
        assert figures["tokens_per_s"] == pytest.approx(figures["tokens"] / figures["seconds_median"], rel=1e-3)
    assert tiny["reelm"]["tokens"] == tiny["hf_generate"]["tokens"] == tokens
    assert tiny["reelm_batch"]["tokens"] == tiny["reelm_samples"]["tokens"] == 2 * tokens
    assert tiny["reelm_over_hf_generate"] == pytest.approx(
        tiny["reelm"]["tokens_per_s"] / tiny["hf_generate"]["tokens_per_s"], rel=1e-3)
    assert tiny["cfg_over_unguided_time"] == pytest.approx(
        tiny["reelm_cfg"]["seconds_median"] / tiny["reelm"]["seconds_median"], rel=1e-3)
    assert tiny["batch_over_single_tokens_per_s"] == pytest.approx(
        tiny["reelm_batch"]["tokens_per_s"] / tiny["reelm"]["tokens_per_s"], rel=1e-3)
    assert tiny["samples_over_single_tokens_per_s"] == pytest.approx(
        tiny["reelm_samples"]["tokens_per_s"] / tiny["reelm"]["tokens_per_s"], rel=1e-3)
    rounds = [b / a for a, b in zip(tiny["reelm"]["seconds_all"], tiny["hf_generate"]["seconds_all"])]
    assert tiny["reelm_over_hf_generate_paired"] == pytest.approx(sum(rounds) / 2, rel=1e-3)  # median of two
    rounds = [c / a for a, c in zip(tiny["reelm"]["seconds_all"], tiny["reelm_cfg"]["seconds_all"])]
    assert tiny["cfg_over_unguided_time_paired"] == pytest.approx(sum(rounds) / 2, rel=1e-3)


def test_bench_generate_times_the_engine_reading_fewer_bytes_and_says_how_often_it_agrees_with_fp32(capsys):
    bench = load_bench_script("bench_generate")
    bench.main(["--presets", "tiny", "--frames", "2", "--latent-hw", "2,4", "--text-vocab", "300",
                "--codebook", "64", "--repeats", "2", "--batch", "2", "--threads", "1", "--top-k", "10",
                "--paths", "reelm,hf_generate,reelm_batch,reelm_bf16,reelm_bf16_batch,reelm_int8,reelm_fp16_batch",
                "--sections", "presets,bandwidth"])
    report = json.loads(capsys.readouterr().out)
    tiny = report["presets"]["tiny"]
    assert tiny["reelm_bf16"]["tokens"] == tiny["reelm"]["tokens"] == tiny["reelm_int8"]["tokens"] == 2 * 8 + 2
    assert tiny["reelm_bf16_batch"]["tokens"] == tiny["reelm_fp16_batch"]["tokens"] == 2 * tiny["reelm_bf16"]["tokens"]
    assert tiny["reelm_bf16_over_hf_generate"] == pytest.approx(
        tiny["reelm_bf16"]["tokens_per_s"] / tiny["hf_generate"]["tokens_per_s"], rel=1e-3)
    assert tiny["reelm_int8_over_reelm"] == pytest.approx(
        tiny["reelm_int8"]["tokens_per_s"] / tiny["reelm"]["tokens_per_s"], rel=1e-3)
    assert tiny["fp16_batch_over_fp32_batch_tokens_per_s"] == pytest.approx(
        tiny["reelm_fp16_batch"]["tokens_per_s"] / tiny["reelm_batch"]["tokens_per_s"], rel=1e-3)
    for variant in ("bf16", "int8"):  # the markers at least agree; sampled codes may not
        assert 0.0 < tiny[f"{variant}_token_agreement"] <= 1.0
    assert "fp16_token_agreement" not in tiny  # only for the variants timed at batch 1
    # the bound of each format: the measured read bandwidth over the bytes a step reads (weights + one row's cache)
    weights, row = tiny["weight_bytes_per_video_step_by_format"], tiny["kv_bytes_per_row_step_mean"]
    assert weights["fp16"] == weights["model"] // 2 == weights["bf16"] and weights["int8"] == weights["model"] // 4
    bandwidth = report["bandwidth"]["read_bytes_per_s"]
    assert bandwidth == max(report["bandwidth"]["read_bytes_per_s_by_probe"][p] for p in ("sum", "matrix_vector"))
    bound = tiny["read_bound_tokens_per_s"]
    assert bound["int8"]["batch_1"] == pytest.approx(bandwidth / (weights["int8"] + row), rel=1e-3)
    assert bound["bf16"]["batch_2"] == pytest.approx(2 * bandwidth / (weights["bf16"] + 2 * (row // 2)), rel=1e-3)
