"""Packing and LM data loading: no cross-document targets, label masks, exact resume."""

import datasets
import numpy as np
import pytest

from reelm.data.lm_data import TASKS, LoaderConfig, MixtureConfig, PackedLoader, split_indices
from reelm.data.packing import pack
from reelm.data.token_layout import IGNORE_INDEX
from reelm.data.text_tokenizer import train_text_tokenizer
from reelm.data.token_layout import Task, TokenLayout

CAPTIONS = [f"a {c} {s} moves {d}" for c in ("red", "blue", "green") for s in ("circle", "square") for d in ("left", "up")]


@pytest.fixture(scope="module")
def layout():
    text = train_text_tokenizer(CAPTIONS * 5, vocab_size=300)
    return TokenLayout.build(text, codebook_size=64, latent_hw=(2, 2))


@pytest.fixture(scope="module")
def dataset(layout):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        t = 1 if i % 5 == 0 else int(rng.integers(2, 4))
        rows.append({
            "codes": rng.integers(0, 64, size=t * 4).tolist(),
            "grid": [t, 2, 2],
            "caption_ids": layout.encode_text(CAPTIONS[i % len(CAPTIONS)]).tolist(),
        })
    return datasets.Dataset.from_list(rows)


def test_pack_resets_positions_and_masks_document_starts():
    a = (np.array([1, 5, 6, 7]), np.array([False, False, True, True]), 0)
    b = (np.array([1, 8, 9]), np.array([False, True, True]), 3)
    block = pack([a, b], block_size=10, pad_id=0)
    assert block.input_ids.tolist() == [1, 5, 6, 7, 1, 8, 9, 0, 0, 0]
    assert block.position_ids.tolist() == [0, 1, 2, 3, 0, 1, 2, 0, 1, 2]
    assert block.labels.tolist() == [IGNORE_INDEX, IGNORE_INDEX, 6, 7, IGNORE_INDEX, 8, 9] + [IGNORE_INDEX] * 3
    assert block.task_index.tolist() == [0] * 4 + [3] * 3 + [-1] * 3
    with pytest.raises(ValueError):
        pack([a, b], block_size=6, pad_id=0)


def _docs(batch, layout):
    """Split each block back into documents by its position ids."""
    for ids, pos, labels, tasks in zip(batch["input_ids"], batch["position_ids"], batch["labels"], batch["task_index"]):
        starts = np.flatnonzero(pos.numpy() == 0).tolist() + [len(ids)]
        for lo, hi in zip(starts, starts[1:]):
            yield ids[lo:hi].numpy(), labels[lo:hi].numpy(), int(tasks[lo])


def test_blocks_hold_whole_valid_sequences_with_target_only_loss(layout, dataset):
    cfg = LoaderConfig(block_size=48, batch_size=4, mixture=MixtureConfig(text_dropout=0.3))
    loader = PackedLoader(dataset, layout, cfg)
    seen_tasks, dropped = set(), 0
    for _ in range(5):
        for ids, labels, task in _docs(loader.next_batch(), layout):
            if task == -1:  # padding tail
                assert (ids == layout.pad_id).all() and (labels == IGNORE_INDEX).all()
                continue
            parsed = layout.parse(ids)  # every document is a complete, well-formed sequence
            assert parsed.task is TASKS[task]
            seen_tasks.add(parsed.task)
            seq = layout.sequence(parsed.task, **parsed.inputs())
            np.testing.assert_array_equal(seq.input_ids, ids)
            np.testing.assert_array_equal(seq.labels(), labels)  # loss only on the generated block
            if parsed.task in (Task.T2V, Task.I2V, Task.V2V) and parsed.text_ids is not None and len(parsed.text_ids) == 0:
                dropped += 1
    assert seen_tasks == set(TASKS)
    assert dropped > 0  # CFG text dropout happens


def test_resume_replays_the_same_batches(layout, dataset):
    cfg = LoaderConfig(block_size=40, batch_size=3)
    straight = PackedLoader(dataset, layout, cfg, rank=1, world_size=2)
    expected = [straight.next_batch() for _ in range(12)]  # crosses epochs
    first = PackedLoader(dataset, layout, cfg, rank=1, world_size=2)
    for _ in range(5):
        first.next_batch()
    resumed = PackedLoader(dataset, layout, cfg, rank=1, world_size=2)
    resumed.load_state_dict(first.state_dict())
    for want in expected[5:]:
        got = resumed.next_batch()
        for key in want:
            assert np.array_equal(want[key].numpy(), got[key].numpy()), key
    assert straight.epoch >= 1


def test_ranks_see_disjoint_examples_and_val_is_held_apart(layout, dataset):
    train, val = split_indices(len(dataset), 0.1, seed=0)
    assert len(val) >= 1 and not set(train) & set(val) and len(train) + len(val) == len(dataset)
    cfg = LoaderConfig(block_size=40, batch_size=1)
    orders = [PackedLoader(dataset, layout, cfg, indices=train, rank=r, world_size=2)._rank_order() for r in (0, 1)]
    assert not set(orders[0]) & set(orders[1]) and set(orders[0]) | set(orders[1]) == set(train)
    with pytest.raises(Exception, match="rank 0 of 2"):
        PackedLoader(dataset, layout, cfg, rank=1, world_size=2).load_state_dict(
            PackedLoader(dataset, layout, cfg, rank=0, world_size=2).state_dict())


def test_too_long_sequences_are_counted_not_silently_dropped(layout, dataset):
    loader = PackedLoader(dataset, layout, LoaderConfig(block_size=16, batch_size=2))
    loader.next_batch()
    assert loader.skipped["longer than block_size"] > 0


def test_continuation_keeps_half_the_clip_rounded_up_and_leaves_a_frame_to_generate(layout, dataset):
    from reelm.data.token_layout import continuation_context

    assert [continuation_context(t) for t in (1, 2, 3, 4, 5, 9)] == [1, 1, 2, 2, 3, 5]
    cfg = LoaderConfig(block_size=48, batch_size=4, mixture=MixtureConfig(t2v=0, i2v=0, v2t=0, uncond=0, v2v=1))
    continued = 0
    for ids, _, task in _docs(PackedLoader(dataset, layout, cfg).next_batch(), layout):
        parsed = layout.parse(ids) if task != -1 else None
        if parsed is not None and parsed.task is Task.V2V:
            t = len(parsed.context) + len(parsed.video)
            assert len(parsed.context) == continuation_context(t)
            continued += t >= 3
    assert continued


def test_caption_weight_lands_on_the_caption_targets_of_video_to_text_sequences_only(layout, dataset):
    from reelm.lm.train import prepare_batch

    cfg = LoaderConfig(block_size=48, batch_size=6, mixture=MixtureConfig(loss_on="all", v2t=0.5))
    batch = PackedLoader(dataset, layout, cfg).next_batch()
    assert "loss_weight" not in prepare_batch(batch, layout, "cpu")  # weight 1: the plain mean, nothing added
    weight = prepare_batch(batch, layout, "cpu", caption_weight=4.0)["loss_weight"].numpy()
    expected = np.ones_like(weight)
    for row, (labels, tasks) in enumerate(zip(batch["labels"].numpy(), batch["task_index"].numpy())):
        for pos in range(1, len(labels)):  # the logits at pos - 1 predict labels[pos]
            if tasks[pos] == TASKS.index(Task.V2T) and labels[pos] != IGNORE_INDEX and layout.is_text(labels[pos]):
                expected[row, pos - 1] = 4.0
    assert (expected == 4.0).any() and (expected == 1.0).any()
    np.testing.assert_array_equal(weight, expected)
    with pytest.raises(ValueError, match="caption_weight"):
        MixtureConfig(caption_weight=-1).weights()


def test_split_documents_gives_each_document_with_a_target_its_own_row():
    from reelm.data.packing import split_documents
    from reelm.data.lm_data import collate

    a = (np.array([1, 5, 6, 7]), np.array([False, False, True, True]), 0)
    b = (np.array([1, 8, 9]), np.array([False, True, True]), 3)
    c = (np.array([1, 4]), np.array([False, True]), 2)
    batch = collate([pack([a, b], block_size=12, pad_id=0), pack([c], block_size=12, pad_id=0)])
    split = split_documents(batch, pad_id=0, multiple_of=2)
    assert split["input_ids"].tolist() == [[1, 5, 6, 7], [1, 8, 9, 0], [1, 4, 0, 0]]  # the padding tails: gone
    assert split["labels"].tolist() == [[IGNORE_INDEX, IGNORE_INDEX, 6, 7], [IGNORE_INDEX, 8, 9, IGNORE_INDEX],
                                        [IGNORE_INDEX, 4, IGNORE_INDEX, IGNORE_INDEX]]
    assert split["position_ids"].tolist() == [[0, 1, 2, 3]] * 3
    assert split["task_index"].tolist() == [[0] * 4, [3, 3, 3, -1], [2, 2, -1, -1]]
    # rows that would hold more tokens than the blocks do: the batch as it was
    full = collate([pack([a, b], block_size=7, pad_id=0)])
    assert split_documents(full, pad_id=0, multiple_of=1) is full


@pytest.mark.parametrize("video_positions", [False, True])
def test_split_rows_give_the_packed_blocks_loss_and_gradients(layout, video_positions):
    import dataclasses

    import torch

    from reelm.data.packing import split_documents
    from reelm.lm.loss_meter import token_losses
    from reelm.lm.model import build_model, layout_grid, preset
    from reelm.lm.train import prepare_batch

    rng = np.random.default_rng(1)  # clips of one length, as a world's are: documents of nearly one length
    clips = datasets.Dataset.from_list([{"codes": rng.integers(0, 64, size=12).tolist(), "grid": [3, 2, 2],
                                         "caption_ids": layout.encode_text(CAPTIONS[i % len(CAPTIONS)]).tolist()}
                                        for i in range(40)])
    cfg = LoaderConfig(block_size=64, batch_size=4, mixture=MixtureConfig(loss_on="all", v2t=0.3, i2v=0.3))
    batch = PackedLoader(clips, layout, cfg).next_batch()
    one_a_row = split_documents(batch, layout.pad_id, multiple_of=1)
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(preset("tiny"), video_positions=video_positions), layout.vocab_size,
                        bos_id=layout.bos_id, eos_id=layout.eos_id, pad_id=layout.pad_id, attn_implementation="sdpa",
                        grid=layout_grid(layout))

    def loss_and_grads(given):
        prepared = prepare_batch(given, layout, "cpu")
        logits = model(input_ids=prepared["input_ids"], position_ids=prepared["position_ids"], use_cache=False).logits
        losses = token_losses(logits, prepared["targets"])
        count = (prepared["targets"] != IGNORE_INDEX).sum()
        loss = losses.sum() / count
        model.zero_grad()
        loss.backward()
        return prepared, count, loss, [p.grad.clone() for p in model.parameters()]

    packed, packed_count, packed_loss, packed_grads = loss_and_grads(batch)
    split, split_count, split_loss, split_grads = loss_and_grads(one_a_row)
    assert split["input_ids"].shape[0] > packed["input_ids"].shape[0]  # several documents a block
    assert split["input_ids"].numel() < packed["input_ids"].numel()  # the padding tails dropped
    assert int(split_count) == int(packed_count)
    torch.testing.assert_close(split_loss, packed_loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(split_grads, packed_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_training_splits_documents_unless_flash_attention_attends_within_them():
    from reelm.lm.train import LMTrainConfig, use_split_documents

    assert use_split_documents(LMTrainConfig(), "sdpa")
    assert not use_split_documents(LMTrainConfig(), "flash_attention_2")
    assert not use_split_documents(LMTrainConfig(split_documents=False), "sdpa")
    assert use_split_documents(LMTrainConfig(split_documents=True), "flash_attention_2")


def test_a_run_saved_before_document_rows_resumes_as_it_ran():
    import torch

    from reelm.lm.train import saved_train_config

    old = saved_train_config({"lr": 1.0, "precision": "fp32"})  # a config saved before the two settings existed
    assert old["split_documents"] is False  # it fed packed blocks
    assert old.get("attention") == (None if torch.cuda.is_available() else "sdpa")
    new = {"lr": 1.0, "precision": "fp32", "split_documents": None, "attention": None}
    assert saved_train_config(new) == new


def test_context_noise_replaces_context_codes_only_and_keeps_them_out_of_the_loss(layout):
    import json

    from reelm.data.lm_data import example_sequence

    rng = np.random.default_rng(1)
    grid = rng.integers(0, 64, size=(3, 2, 2))
    plain = {"codes": grid.ravel().tolist(), "grid": [3, 2, 2], "caption_ids": layout.encode_text(CAPTIONS[0]).tolist()}
    story = {**plain, "attributes": json.dumps({"story": {"context_latent_frames": 1}})}
    v2v = dict(t2v=0, i2v=0, v2t=0, uncond=0, v2v=1, text_dropout=0, loss_on="all")
    for example, k in ((plain, 2), (story, 1)):
        clean = layout.sequence(Task.V2V, text=CAPTIONS[0], context=grid[:k], video=grid[k:], loss_on="all")
        ids, mask, _ = example_sequence(layout, example, MixtureConfig(**v2v), np.random.default_rng(0))
        np.testing.assert_array_equal(ids, clean.input_ids)  # no noise: the sequence as it was
        np.testing.assert_array_equal(mask, clean.loss_mask)
        changed = 0
        for seed in range(20):
            ids, mask, _ = example_sequence(layout, example, MixtureConfig(**v2v, context_noise=0.5),
                                            np.random.default_rng(seed))
            parsed = layout.parse(ids)
            np.testing.assert_array_equal(parsed.video, grid[k:])  # the target is never touched
            assert parsed.text == CAPTIONS[0]
            differ = ids != clean.input_ids
            assert not mask[differ].any()  # a replaced code is read, never learned
            np.testing.assert_array_equal(mask[~differ], clean.loss_mask[~differ])
            changed += int(differ.sum())
        assert 0.3 < changed / (20 * k * 4) < 0.6  # about half the context codes (a draw may repeat the code)
    with pytest.raises(ValueError, match="context_noise"):
        MixtureConfig(context_noise=1.0).weights()
