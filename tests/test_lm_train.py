"""LM pretraining: overfitting, exact resume under every ZeRO stage, packing isolation on a trained
model, the Hugging Face export, crash-safe checkpoints, and 2-process ZeRO-2 through the deepspeed launcher."""

import dataclasses
import json
import math
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from reelm.core.checkpoint_format import CheckpointError, list_checkpoints, read_meta, staging_dir, write_meta
from reelm.core.config import apply_overrides, split_overrides
from reelm.data.lm_data import LoaderConfig, MixtureConfig, PackedLoader
from reelm.data.shards import LAYOUT_DIR, VIDEO_TOKENIZER_DIR, chunk_name, load_shards, part_dir, write_chunk, write_info
from reelm.data.text_tokenizer import train_text_tokenizer
from reelm.data.token_layout import TokenLayout
from reelm.core.errors import ReelmError
from reelm.lm.lm_checkpoint import export_lm, load_lm, video_tokenizer_dir
from reelm.lm.ds_config import SHIPPED_CONFIGS, load_deepspeed_config, resolve_deepspeed_config
from reelm.data.token_layout import IGNORE_INDEX
from reelm.lm.loss_meter import shift_left, token_losses
from reelm.core.device import cxx_compiler
from reelm.lm.model import preset
from reelm.lm.train import LMTrainConfig, resolve_zero_stage, train, use_compile

from conftest import child_env, free_port

CAPTIONS = [f"a {c} {s} moves {m}" for c in ("red", "blue", "green", "yellow")
            for s in ("circle", "square", "triangle") for m in ("left", "right", "up", "down")]
HW, FRAMES, CODEBOOK = (4, 4), 3, 64
CLIP = {"num_frames": 9, "fps": 8.0, "size": 32, "temporal_crop": "center", "clips_per_video": 1}
VIDEO_TOKENIZER = {"codebook_size": CODEBOOK, "latent_hw": list(HW), "fingerprint": "test-video-tokenizer"}
COMMON = ["block_size=128", "micro_batch_size=2", "log_every=1", "val_every=5", "val_batches=2",
          "checkpoint_every=5", "warmup_steps=2", "lr=2e-3", "keep_last=0"]


def make_shards(out: Path, num_clips: int, seed: int = 0) -> TokenLayout:
    """A shard folder as ``reelm data tokenize`` writes it, with random codes and real captions."""
    text = train_text_tokenizer(CAPTIONS * 3, vocab_size=300)
    layout = TokenLayout.build(text, codebook_size=CODEBOOK, latent_hw=HW, video_tokenizer=VIDEO_TOKENIZER)
    layout.save(out / LAYOUT_DIR)
    write_info(out, {"video_tokenizer": VIDEO_TOKENIZER, "source": "test", "clip": CLIP})
    # The video tokenizer a real shard folder carries: only its identity matters to the LM side.
    (out / VIDEO_TOKENIZER_DIR).mkdir()
    write_meta(out / VIDEO_TOKENIZER_DIR, "video_tokenizer", {}, codebook_size=CODEBOOK, temporal_downsample=4,
               spatial_downsample=8, fingerprint=VIDEO_TOKENIZER["fingerprint"])
    (out / VIDEO_TOKENIZER_DIR / "model.safetensors").write_bytes(b"weights")
    rng = np.random.default_rng(seed)
    records = [{
        "codes": rng.integers(0, CODEBOOK, size=FRAMES * HW[0] * HW[1]).tolist(), "grid": [FRAMES, *HW],
        "caption": CAPTIONS[i % len(CAPTIONS)], "caption_ids": layout.encode_text(CAPTIONS[i % len(CAPTIONS)]).tolist(),
        "source": "test", "row": i, "clip": 0, "start": 0.0, "is_image": False, "attributes": "",
    } for i in range(num_clips)]
    folder = part_dir(out, 0, 1)
    folder.mkdir(parents=True)
    write_chunk(folder / chunk_name(0), records, [])
    return layout


def run(data, out, steps, *overrides, **kwargs):
    """One training run, as a fresh process would make it.

    torch.compile's state is process-wide: after enough compiles of the decoder layer (other runs
    of this process with other shapes, precisions or modes) dynamo stops compiling it and runs it
    eagerly, and earlier shapes make later compiles dynamic-shaped. Either changes bf16 rounding,
    so a run here and the run it is compared with would differ for a reason no real resume has
    (each ``reelm lm train --resume`` is a new process). Reset it, as a new process starts.
    """
    torch._dynamo.reset()
    model, config = tiny_configs(steps, *overrides)
    return train(data, out, model=model, config=config, peak_flops=1e11, progress=False, **kwargs)


def tiny_configs(steps, *overrides):
    """The ``tiny`` preset and the tests' training config, with ``model.KEY=V`` / ``KEY=V`` overrides."""
    model_sets, train_sets = split_overrides([*COMMON, f"steps={steps}", *overrides])
    return (apply_overrides(preset("tiny"), model_sets, prefix="model."),
            apply_overrides(LMTrainConfig(), train_sets))


def weights(folder):
    return load_file(str(Path(folder) / "model.safetensors"))


@pytest.fixture(scope="module", autouse=True)
def _isolated(single_thread_isolated):
    """Every test here (and its module fixtures) on one thread, with the environment restored."""
    yield


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    make_shards(out, 40)
    return out


@pytest.fixture(scope="module")
def straight(shards, tmp_path_factory):
    """10 uninterrupted ZeRO-2 steps with checkpoints at 5 and 10."""
    out = tmp_path_factory.mktemp("straight")
    return out, run(shards, out, 10, "zero_stage=2")


def test_tiny_model_overfits_a_handful_of_sequences(tmp_path):
    data = tmp_path / "shards"
    layout = make_shards(data, 6)
    t2v_only = ["mixture.t2v=1", "mixture.i2v=0", "mixture.v2v=0", "mixture.v2t=0", "mixture.uncond=0",
                "mixture.text_dropout=0", "val_fraction=0"]
    result = run(data, tmp_path / "run", 80, "lr=3e-3", "warmup_steps=5", "log_every=10", "checkpoint_every=80",
                 *t2v_only)
    loader = PackedLoader(load_shards(data).dataset, layout, LoaderConfig(block_size=128, batch_size=3, mixture=
                          MixtureConfig(t2v=1, i2v=0, v2v=0, v2t=0, uncond=0, text_dropout=0)), shuffle=False)
    batch = loader.next_batch()  # all 6 clips, 2 per block
    with torch.no_grad():
        logits = result.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    targets = shift_left(batch["labels"], IGNORE_INDEX)
    loss = token_losses(logits, targets).sum().item() / (targets != IGNORE_INDEX).sum().item()
    counts = np.array(list(Counter(targets[targets != IGNORE_INDEX].tolist()).values()), dtype=float)
    unigram_entropy = float(-(counts / counts.sum() * np.log(counts / counts.sum())).sum())
    # The targets are uniformly random codes (plus <eov>, <eos>): a model that only learnt their
    # frequencies sits at the unigram entropy (~4 nats; ln of the vocabulary is ~5.9). Going far below
    # it is only possible by memorising each clip's codes from its caption.
    assert unigram_entropy > 3.5 and math.log(layout.vocab_size) > 5.5
    assert loss < 0.1 * unigram_entropy, (loss, unigram_entropy)


def test_training_logs_losses_per_task_and_modality_and_plots_them(straight):
    out, result = straight
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["split"] == "train"]
    val_records = [r for r in records if r["split"] == "val"]
    assert [r["step"] for r in train_records] == list(range(1, 11)) and [r["step"] for r in val_records] == [5, 10]
    seen = set().union(*(r.keys() for r in train_records))
    assert {"loss/text", "loss/video", "loss/t2v", "loss/i2v", "loss/v2v", "loss/v2t", "loss/uncond"} <= seen
    for r in train_records:
        assert r["tokens_per_s"] > 0 and 0 < r["mfu"] and r["grad_norm"] > 0
    lrs = [r["lr"] for r in train_records]
    assert lrs[0] < lrs[1] and lrs[-1] < lrs[2]  # warm-up, then cosine decay
    assert train_records[-1]["loss"] < train_records[0]["loss"]
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.metrics["step"] == 10 and result.checkpoint == out / "step-000010"


@pytest.mark.parametrize("stage, extra", [
    pytest.param(0, ["activation_checkpointing=true"], marks=pytest.mark.slow),  # with compile (unset: on, CPU)
    pytest.param(1, ["grad_accum_steps=2"], marks=pytest.mark.slow),
    (2, []),
    pytest.param(3, ["activation_checkpointing=true"], marks=pytest.mark.slow),
])
def test_resume_gives_the_weights_of_an_uninterrupted_run(shards, straight, tmp_path, stage, extra):
    settings = [f"zero_stage={stage}", *extra]
    if stage == 2:
        reference, _ = straight
    else:
        reference = tmp_path / "straight"
        run(shards, reference, 10, *settings)
    out = tmp_path / "resumed"
    first = run(shards, out, 10, *settings, stop_at=5)
    assert first.step == 5 and [s for s, _ in list_checkpoints(out)] == [5]
    second = run(shards, out, 10, *settings, resume=True)
    assert second.step == 10
    want, got = weights(reference / "step-000010"), weights(out / "step-000010")
    assert want.keys() == got.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-6, msg=name)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    reference_log = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["split"]) for r in logged] == [(r["step"], r["split"]) for r in reference_log]
    for a, b in zip(logged, reference_log):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
    assert read_meta(out / "step-000010")["deepspeed"]["zero_optimization"]["stage"] == stage


def test_a_partial_checkpoint_is_ignored_by_resume(shards, straight, tmp_path):
    out = tmp_path / "run"
    # ZeRO 2, as `straight` it is compared with: under bf16 autocast (CPUs with native bf16) ZeRO 0 and 2 do not
    # give the same bits (2e-4 apart after 10 steps), so the default stage (0 on one process) matches it only in fp32
    run(shards, out, 10, "zero_stage=2", stop_at=5)
    # A save killed before its commit leaves a staging folder, even one holding every file.
    staged = staging_dir(out, 8)
    shutil.copytree(out / "step-000005", staged)
    (staged / "model.safetensors").write_bytes(b"half-written")
    assert [s for s, _ in list_checkpoints(out)] == [5]
    result = run(shards, out, 10, "zero_stage=2", resume=True)
    assert result.step == 10 and not staged.exists()
    reference, _ = straight
    for name, tensor in weights(reference / "step-000010").items():
        torch.testing.assert_close(weights(out / "step-000010")[name], tensor, rtol=0, atol=1e-6)


def test_resume_refuses_another_config_and_fresh_runs_refuse_a_used_folder(shards, straight, tmp_path):
    reference, _ = straight
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    with pytest.raises(ReelmError, match=r"lr=0\.001 \(was 0\.002\)"):
        run(shards, out, 10, "lr=1e-3", resume=True)
    with pytest.raises(ReelmError, match="model.num_layers"):
        run(shards, out, 10, "model.num_layers=2", resume=True)
    with pytest.raises(ReelmError, match="pass --resume"):
        run(shards, out, 10)
    already = run(shards, out, 10, resume=True)  # nothing left to do: the latest checkpoint stands
    assert already.step == 10 and already.checkpoint == out / "step-000010"


def test_compiled_layers_train_like_eager_and_export_the_same_names(shards, straight, tmp_path):
    if cxx_compiler() is None:
        pytest.skip("no C++ compiler: compile stays off unless asked for")
    reference, result = straight  # compile unset: on for CPU training (the resume tests resume it exactly)
    assert read_meta(reference / "step-000010")["compiled"] is True
    assert all(layer._compiled_call_impl is not None for layer in result.model.model.layers)
    # In fp32, so that only the compilation differs (bf16, the default on CPUs with native bf16,
    # rounds each fused kernel's products to 8 bits of mantissa, differently from eager).
    compiled, eager = tmp_path / "compiled", tmp_path / "eager"
    run(shards, compiled, 10, "precision=fp32")
    run(shards, eager, 10, "compile=false", "precision=fp32")
    assert read_meta(compiled / "step-000010")["compiled"] is True
    assert read_meta(eager / "step-000010")["compiled"] is False
    want, got = weights(eager / "step-000010"), weights(compiled / "step-000010")
    assert want.keys() == got.keys() == weights(reference / "step-000010").keys()
    for name in want:  # inductor's fused kernels round differently (1e-7 seen), nothing more
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-5, msg=name)


def test_compile_is_on_by_default_only_for_cpu_training_under_zero_0_to_2_with_a_compiler():
    from torch._inductor import config as inductor_config

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert use_compile(LMTrainConfig(compile=True), gpu) and not use_compile(LMTrainConfig(compile=False), cpu)
    assert not use_compile(LMTrainConfig(), gpu) and not use_compile(LMTrainConfig(zero_stage=3), cpu)
    assert use_compile(LMTrainConfig(), cpu) == (cxx_compiler() is not None)
    with inductor_config.patch({"cpp.cxx": (None, "no-such-c++-compiler")}):
        assert not use_compile(LMTrainConfig(), cpu)


def test_zero_stage_auto_is_zero_0_on_one_process_and_2_on_several_and_the_run_saves_what_it_resolved(shards,
                                                                                                      tmp_path):
    assert LMTrainConfig().zero_stage == "auto"
    assert resolve_zero_stage(LMTrainConfig(), world_size=1).zero_stage == 0
    assert resolve_zero_stage(LMTrainConfig(), world_size=4).zero_stage == 2
    assert resolve_zero_stage(LMTrainConfig(zero_stage=3), world_size=1).zero_stage == 3
    assert resolve_zero_stage(LMTrainConfig(), world_size=1, resumed_stage=2).zero_stage == 2  # a resume keeps its own
    assert resolve_zero_stage(LMTrainConfig(zero_stage=1), world_size=1, resumed_stage=2).zero_stage == 1
    result = run(shards, tmp_path / "auto", 2, "checkpoint_every=2")
    assert read_meta(result.checkpoint, "lm")["train"]["zero_stage"] == 0
    with pytest.raises(ReelmError, match="zero_stage 'two' is not one of 0, 1, 2, 3 or auto"):
        run(shards, tmp_path / "bad", 2, "zero_stage=two")
    with pytest.raises(ReelmError, match="zero_stage 5 is not one of 0, 1, 2, 3 or auto"):
        run(shards, tmp_path / "bad", 2, "zero_stage=5")


def test_a_zero3_run_gives_the_process_back_its_own_linear(shards, tmp_path):
    """DeepSpeed swaps F.linear process-wide for a stage-3 engine; after the run it is torch's again, so a module
    made later in the process scripts and saves (it failed: 'strides() called on an undefined Tensor')."""
    original = torch.nn.functional.linear
    run(shards, tmp_path / "z3", 1, "zero_stage=3", "compile=false", "val_every=0")
    assert torch.nn.functional.linear is original
    torch.jit.save(torch.jit.script(torch.nn.Linear(4, 2)), str(tmp_path / "linear.pt"))


def test_training_config_rejects_compile_under_zero3_and_flags_that_are_not_booleans(shards, tmp_path):
    with pytest.raises(ReelmError, match="ZeRO stages 0-2"):
        run(shards, tmp_path / "a", 2, "compile=true", "zero_stage=3")
    with pytest.raises(ReelmError, match="--set compile=yes: expected true or false or null"):
        run(shards, tmp_path / "b", 2, "compile=yes")


def test_packed_documents_do_not_attend_across_in_a_trained_model(shards, straight):
    model, layout, _ = load_lm(straight[0])
    loader = PackedLoader(load_shards(shards).dataset, layout, LoaderConfig(block_size=128, batch_size=4))
    batch = loader.next_batch()
    compared = 0
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        unpacked = model(input_ids=batch["input_ids"], use_cache=False).logits  # positions run on: documents mix
        for row in range(len(batch["input_ids"])):
            starts = torch.nonzero(batch["position_ids"][row] == 0).flatten().tolist()
            for lo, hi in zip(starts, starts[1:] + [batch["input_ids"].shape[1]]):
                if batch["task_index"][row, lo] < 0:  # the padding tail
                    continue
                alone = model(input_ids=batch["input_ids"][row:row + 1, lo:hi], use_cache=False).logits[0]
                torch.testing.assert_close(packed[row, lo:hi], alone, atol=1e-4, rtol=1e-4)
                if lo > 0:
                    compared += 1
                    assert not torch.allclose(unpacked[row, lo:hi], alone, atol=1e-3)  # the check can fail
    assert compared >= 3  # later documents of a block, the ones that could have leaked


def test_checkpoint_loads_with_transformers_and_gives_the_trained_logits(shards, straight, tmp_path):
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    out, result = straight
    folder = out / "step-000010"
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    layout = load_shards(shards).layout
    batch = PackedLoader(load_shards(shards).dataset, layout, LoaderConfig(block_size=128, batch_size=2)).next_batch()
    with torch.no_grad():
        want = result.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        got = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert tokenizer("a red circle moves left")["input_ids"] == layout.encode_text("a red circle moves left").tolist()
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == \
        (layout.bos_id, layout.eos_id, layout.pad_id)
    assert not hasattr(model.config, "reelm")  # each fact has one home: token_layout.json and reelm.json
    loaded, loaded_layout, meta = load_lm(out)  # a run folder: its latest checkpoint
    assert loaded_layout == layout and meta["step"] == 10 and meta["world_size"] == 1
    assert meta["train"]["steps"] == 10 and meta["config"]["hidden_size"] == preset("tiny").hidden_size
    assert not [p for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    # A model trained with flash-attention exports no backend: a CPU loader picks its own.
    model.config._attn_implementation = "flash_attention_2"
    export_lm(tmp_path / "export", model, layout, preset("tiny"))
    assert "flash" not in (tmp_path / "export" / "config.json").read_text()
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "export")
    assert again.config._attn_implementation == "sdpa"


def test_a_fine_tune_starts_from_a_model_folder_with_a_new_optimizer(shards, straight, tmp_path):
    out, _ = straight
    start = weights(out / "step-000010")
    # lr 0: a fine-tune that cannot move keeps the weights it started from exactly.
    _, config = tiny_configs(2, "lr=0", "checkpoint_every=2", "val_every=0", "compile=false")
    tuned = train(shards, tmp_path / "tuned", config=dataclasses.replace(config, init_from=str(out)),
                  peak_flops=1e11, progress=False)
    assert tuned.step == 2
    for name, tensor in weights(tuned.checkpoint).items():
        torch.testing.assert_close(tensor, start[name], rtol=0, atol=0, msg=name)
    assert read_meta(tuned.checkpoint, "lm")["train"]["init_from"] == str(out)
    model, bigger = tiny_configs(2, "model.num_layers=3")
    with pytest.raises(ReelmError, match="model config differs.*num_layers"):
        train(shards, tmp_path / "bad", model=model, config=dataclasses.replace(bigger, init_from=str(out)),
              peak_flops=1e11, progress=False)
    done = subprocess.run([sys.executable, "-m", "reelm.cli", "lm", "train", "--init-from", str(out), "--data",
                           str(shards), "--out", str(tmp_path / "cli"), "--steps", "1", "--set", "block_size=128",
                           "--set", "compile=false", "--set", "val_every=0", "--peak-flops", "1e11", "--no-progress"],
                          capture_output=True, text=True,
                          env=child_env())
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_meta(tmp_path / "cli" / "step-000001", "lm")["config"] == read_meta(out / "step-000010", "lm")["config"]


def test_an_export_holds_what_inference_needs_readable_by_others_and_loads(straight, tmp_path):
    from transformers import AutoModelForCausalLM

    from reelm.cli import main
    from reelm.lm.lm_checkpoint import build_lm, read_lm_folder

    out, _ = straight
    assert main(["lm", "export", str(out), "--out", str(tmp_path / "exported")]) == 0
    exported = tmp_path / "exported"
    names = {p.name for p in exported.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "token_layout.json", "reelm.json", "README.md",
            "video_tokenizer"} <= names
    assert not any(n.startswith(("optimizer", "trainer")) for n in names)
    assert all(p.stat().st_mode & 0o777 == (0o755 if p.is_dir() else 0o644) for p in [exported, *exported.rglob("*")])
    meta = read_meta(exported, "lm")
    assert meta["step"] == 10 and meta["clip"] == CLIP and "deepspeed" not in meta
    card = (exported / "README.md").read_text()
    assert "10 steps" in card and "reelm generate" in card
    folder, meta, layout = read_lm_folder(exported)
    build_lm(folder, meta, layout)  # config.json checked against reelm.json and the layout
    assert layout == read_lm_folder(out / "step-000010")[2]
    assert (exported / "video_tokenizer" / "reelm.json").is_file()
    for name, tensor in weights(exported).items():
        torch.testing.assert_close(tensor, weights(out / "step-000010")[name], rtol=0, atol=0)
    assert AutoModelForCausalLM.from_pretrained(exported).config.vocab_size >= layout.vocab_size
    with pytest.raises(CheckpointError, match="already exists"):
        from reelm.lm.model_export import export_model

        export_model(out, exported)


def test_a_step_folder_copied_alone_loads_with_its_video_tokenizer_and_clip_spec(straight, tmp_path):
    out, _ = straight
    alone = tmp_path / "somewhere" / "model"
    shutil.copytree(out / "step-000010", alone)
    model, layout, meta = load_lm(alone)
    assert meta["clip"] == CLIP and layout.latent_hw == HW
    found = video_tokenizer_dir(alone, layout)
    assert found == alone / VIDEO_TOKENIZER_DIR and read_meta(found, "video_tokenizer")["fingerprint"] == \
        VIDEO_TOKENIZER["fingerprint"]
    assert meta["data"] == {"source": "test", "clips": 40}  # where the data came from, not a path training needs
    # The tokenizer's identity is checked against the layout's.
    write_meta(found, "video_tokenizer", {}, codebook_size=CODEBOOK, temporal_downsample=4, spatial_downsample=8,
               fingerprint="another-tokenizer")
    with pytest.raises(CheckpointError, match="not the video tokenizer this model was trained on"):
        video_tokenizer_dir(alone, layout)
    # config.json is a checked copy of reelm.json's model config: a drifted one is refused.
    config = json.loads((alone / "config.json").read_text())
    (alone / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 7}))
    with pytest.raises(CheckpointError, match="num_hidden_layers 7"):
        load_lm(alone)


def test_a_checkpoint_from_before_the_consolidation_still_loads_and_says_what_generation_needs(straight, tmp_path):
    out, _ = straight
    old = tmp_path / "old"
    shutil.copytree(out / "step-000010", old)
    shutil.rmtree(old / VIDEO_TOKENIZER_DIR)
    config = json.loads((old / "config.json").read_text())
    (old / "config.json").write_text(json.dumps({**config, "reelm": {"video_tokenizer": VIDEO_TOKENIZER}}))
    meta = json.loads((old / "reelm.json").read_text())
    del meta["clip"]
    (old / "reelm.json").write_text(json.dumps(meta))
    model, layout, meta = load_lm(old)
    assert model.config.vocab_size >= layout.vocab_size and "clip" not in meta
    with pytest.raises(CheckpointError, match="before reelm 0.2.*--video-tokenizer"):
        video_tokenizer_dir(old, layout)


def test_a_finished_run_continues_to_more_steps_with_a_replanned_schedule(shards, straight, tmp_path, capsys):
    reference, _ = straight
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    with pytest.raises(ReelmError, match="already ended at step 10"):
        run(shards, out, 8, resume=True)
    with pytest.raises(ReelmError, match=r"lr=0\.001 \(was 0\.002\); warmup_steps=3 \(was 2\)"):
        run(shards, out, 14, "lr=1e-3", "warmup_steps=3", resume=True)  # every difference is listed
    result = run(shards, out, 14, "log_every=2", resume=True)  # a logging interval is safe to change
    assert result.step == 14
    assert "continuing a finished run from step 10 (planned for 10) to 14" in capsys.readouterr().out
    meta = read_meta(out / "step-000014", "lm")
    assert meta["schedule_plans"] == [{"from_step": 0, "steps": 10}, {"from_step": 10, "steps": 14}]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    lr_12 = next(r["lr"] for r in records if r["step"] == 12 and r["split"] == "train")
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    probe = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2e-3)
    plan = get_cosine_with_min_lr_schedule_with_warmup(probe, 2, 14, min_lr_rate=0.1)
    for _ in range(11):
        plan.step()
    assert lr_12 == pytest.approx(plan.get_last_lr()[0], rel=1e-6)  # the LR of step 12 under the 14-step plan
    with pytest.raises(ReelmError, match="an unfinished run resumes on its own schedule"):
        shutil.copytree(reference, tmp_path / "half")
        shutil.rmtree(tmp_path / "half" / "step-000010")
        run(shards, tmp_path / "half", 14, resume=True)


def test_deepspeed_configs_fill_auto_values_and_reject_disagreements():
    cfg = LMTrainConfig(micro_batch_size=3, grad_accum_steps=2, grad_clip=0.5, zero_stage=2)
    for name in SHIPPED_CONFIGS:
        stage = int(name[-1])
        resolved = resolve_deepspeed_config(load_deepspeed_config(name), LMTrainConfig(zero_stage=stage),
                                            world_size=2, bf16=False)
        assert resolved["zero_optimization"]["stage"] == stage and "auto" not in json.dumps(resolved)
    resolved = resolve_deepspeed_config(load_deepspeed_config("zero2"), cfg, world_size=4, bf16=True)
    assert (resolved["train_micro_batch_size_per_gpu"], resolved["gradient_accumulation_steps"],
            resolved["train_batch_size"], resolved["gradient_clipping"], resolved["bf16"]["enabled"]) == \
        (3, 2, 24, 0.5, True)
    with pytest.raises(ReelmError, match="gradient_clipping is 1.0"):
        resolve_deepspeed_config({"gradient_clipping": 1.0}, cfg, world_size=1, bf16=False)
    with pytest.raises(ReelmError, match="'optimizer' section"):
        resolve_deepspeed_config({"optimizer": {"type": "Adam"}}, cfg, world_size=1, bf16=False)
    with pytest.raises(ReelmError, match="neither one of"):
        load_deepspeed_config("zero9")


def _launch(*args, cwd):
    reelm = str(Path(sys.executable).parent / "reelm")
    deepspeed = str(Path(sys.executable).parent / "deepspeed")
    done = subprocess.run([deepspeed, "--num_gpus", "2", "--master_port", free_port(), reelm, "lm", "train", *args],
                          cwd=cwd, env=child_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_two_process_zero2_through_the_deepspeed_launcher_resumes_exactly(shards, tmp_path):
    from transformers import AutoModelForCausalLM

    args = ["--preset", "tiny", "--data", str(shards), "--steps", "4", "--peak-flops", "1e11", "--no-progress",
            *[a for o in ["block_size=128", "micro_batch_size=2", "checkpoint_every=2", "val_every=2", "lr=2e-3"]
              for a in ("--set", o)]]
    _launch(*args, "--out", "straight", cwd=tmp_path)
    _launch(*args, "--out", "resumed", "--stop-at", "2", cwd=tmp_path)
    assert [s for s, _ in list_checkpoints(tmp_path / "resumed")] == [2]
    done = _launch(*args, "--out", "resumed", "--resume", cwd=tmp_path)
    assert "step 4" in done.stdout
    folder = tmp_path / "resumed" / "step-000004"
    meta = read_meta(folder, "lm")
    assert meta["world_size"] == 2 and meta["deepspeed"]["zero_optimization"]["stage"] == 2
    assert {p.name for p in folder.glob("optimizer-rank*.safetensors")} == \
        {"optimizer-rank00000.safetensors", "optimizer-rank00001.safetensors"}
    want = weights(tmp_path / "straight" / "step-000004")
    for name, tensor in weights(folder).items():
        torch.testing.assert_close(tensor, want[name], rtol=0, atol=1e-6)
    AutoModelForCausalLM.from_pretrained(folder)
    with pytest.raises(ReelmError, match="2 processes, this run has 1"):
        train(shards, tmp_path / "resumed", resume=True, peak_flops=1e11, progress=False)


def test_training_again_after_leaving_the_process_group_works(shards, tmp_path):
    """A notebook (or the demo) trains, leaves the process group, and trains again in the same process:
    DeepSpeed's cached clone of the old group must not outlive it."""
    from reelm.core.distributed import shutdown_distributed

    first = run(shards, tmp_path / "a", 2)
    shutdown_distributed()
    second = run(shards, tmp_path / "b", 2)
    shutdown_distributed()
    assert first.step == second.step == 2
    assert all(torch.equal(weights(first.checkpoint)[k], v) for k, v in weights(second.checkpoint).items())


def test_lora_trains_an_adapter_that_saves_loads_resumes_and_exports_merged(shards, straight, tmp_path):
    from transformers import AutoModelForCausalLM

    from reelm.lm.lm_checkpoint import build_lm, read_lm_folder
    from reelm.lm.model_export import export_model

    out, _ = straight
    base = out / "step-000010"
    lora = ["lora.rank=4", "lr=1e-2", "checkpoint_every=2", "val_every=0", "compile=false"]

    def lora_run(folder, steps, **kwargs):
        torch._dynamo.reset()
        _, config = tiny_configs(steps, *lora)
        return train(shards, folder, config=dataclasses.replace(config, init_from=str(out)), peak_flops=1e11,
                     progress=False, **kwargs)

    tuned = lora_run(tmp_path / "lora", 4)
    names = {p.name for p in tuned.checkpoint.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "token_layout.json", "video_tokenizer"} <= names
    assert "model.safetensors" not in names  # the adapter only: the base stays where it is
    adapter = load_file(str(tuned.checkpoint / "adapter_model.safetensors"))
    assert adapter and all("lora_" in name for name in adapter)
    assert sum(t.numel() for t in adapter.values()) < 0.1 * sum(t.numel() for t in weights(base).values())
    meta = read_meta(tuned.checkpoint, "lm")
    assert meta["lora"]["base"] == str(base.resolve()) and meta["lora"]["rank"] == 4

    # Loaded for inference: the base with the adapter merged, a plain model that computes what training's did.
    folder, meta, layout = read_lm_folder(tmp_path / "lora")
    merged = build_lm(folder, meta, layout)
    assert type(merged).__name__.endswith("ForCausalLM") and not hasattr(merged, "peft_config")
    ids = torch.randint(0, layout.vocab_size, (2, 32))
    with torch.no_grad():
        trained = tuned.model.eval()(input_ids=ids).logits
        torch.testing.assert_close(merged(input_ids=ids).logits, trained, rtol=1e-4, atol=1e-4)
        plain = build_lm(*read_lm_folder(base))(input_ids=ids).logits
    assert (plain - trained).abs().max() > 1e-3  # the adapter moved the model
    merged_weights, base_weights = merged.state_dict(), weights(base)
    changed = {n for n, t in base_weights.items() if not torch.equal(merged_weights[n], t)}
    assert changed and all(n.rsplit(".", 2)[-2] in ("q_proj", "k_proj", "v_proj", "o_proj") for n in changed)

    # Resumed from its step-2 adapter, a LoRA run gives the adapter of an uninterrupted one.
    lora_run(tmp_path / "split", 4, stop_at=2)
    resumed = lora_run(tmp_path / "split", 4, resume=True)
    for name, tensor in load_file(str(resumed.checkpoint / "adapter_model.safetensors")).items():
        torch.testing.assert_close(tensor, adapter[name], rtol=0, atol=0, msg=name)

    # The export merges it: a full model folder that stands alone, without the base.
    exported = export_model(tmp_path / "lora", tmp_path / "exported")
    assert (exported / "model.safetensors").is_file() and not (exported / "adapter_config.json").exists()
    assert read_meta(exported, "lm")["merged_lora"]["rank"] == 4 and "LoRA rank 4" in (exported / "README.md").read_text()
    with torch.no_grad():
        again = AutoModelForCausalLM.from_pretrained(exported)(input_ids=ids).logits
    torch.testing.assert_close(again, trained, rtol=1e-4, atol=1e-4)


def test_lora_refuses_settings_it_cannot_train(shards, straight, tmp_path, capsys):
    from reelm.cli import main

    out, _ = straight
    model, config = tiny_configs(1, "lora.rank=4")
    with pytest.raises(ReelmError, match="lora.rank > 0 adapts an existing model: give --init-from"):
        train(shards, tmp_path / "a", model=model, config=config, peak_flops=1e11, progress=False)
    assert main(["lm", "train", "--preset", "tiny", "--data", str(shards), "--out", str(tmp_path / "cli"),
                 "--lora", "2", "--steps", "1"]) != 0
    assert "lora.rank > 0 adapts an existing model" in capsys.readouterr().err
    _, config = tiny_configs(1, "lora.rank=4", "lora.target_modules=[\"nope_proj\"]", "compile=false")
    with pytest.raises(ReelmError, match="lora.target_modules"):
        train(shards, tmp_path / "b", config=dataclasses.replace(config, init_from=str(out)), peak_flops=1e11,
              progress=False)
    moved = tmp_path / "moved"
    _, config = tiny_configs(1, "lora.rank=2", "val_every=0", "compile=false")
    shutil.copytree(out, moved)
    tuned = train(shards, tmp_path / "c", config=dataclasses.replace(config, init_from=str(moved)), peak_flops=1e11,
                  progress=False)
    shutil.rmtree(moved)
    from reelm.lm.lm_checkpoint import build_lm, read_lm_folder

    with pytest.raises(CheckpointError, match="LoRA adapter whose base model .*moved.* is not there"):
        build_lm(*read_lm_folder(tuned.checkpoint))
