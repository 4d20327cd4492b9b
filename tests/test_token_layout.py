"""The token layout: id plan, task sequences, loss masks, parsing, constrained decoding, files."""

import json
import random

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from reelm.data.text_tokenizer import TextTokenizerError, load_text_tokenizer, train_text_tokenizer
from reelm.data.token_layout import (
    LAYOUT_FILE,
    SPECIAL_TOKENS,
    AllowedIds,
    LayoutError,
    Task,
    TokenLayout,
    special_token,
)
from reelm.core.errors import ReelmError

CODEBOOK = 2**18
HW = (3, 4)
IDENTITY = {"codebook_size": CODEBOOK, "latent_hw": list(HW), "fingerprint": "f00d"}
WORDS = ["a", "red", "blue", "ball", "square", "moves", "left", "right", "slowly", "über", "猫", "🎈"]


def captions(count=300, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8))) for _ in range(count)]


@pytest.fixture(scope="module")
def text_tokenizer():
    return train_text_tokenizer(captions(), vocab_size=350)


@pytest.fixture(scope="module")
def layout(text_tokenizer):
    return TokenLayout.build(text_tokenizer, codebook_size=CODEBOOK, latent_hw=HW, video_tokenizer=IDENTITY)


def grid(t, seed=0, high=CODEBOOK):
    return np.random.default_rng(seed).integers(0, high, size=(t, *HW))


def inputs_for(task, text="a red ball moves left"):
    return {
        Task.T2V: {"text": text, "video": grid(2, 1)},
        Task.I2V: {"text": text, "image": grid(1, 2), "video": grid(3, 3)},
        Task.V2V: {"text": text, "context": grid(2, 4), "video": grid(2, 5)},
        Task.V2T: {"video": grid(3, 6), "text": text},
        Task.UNCOND: {"video": grid(2, 7)},
    }[task]


def expected_ids(layout, task, inputs):
    """The documented template of each task, spelled out with the layout's special ids."""
    s = layout.special_ids

    def text():
        value = inputs.get("text")
        return [s["bot"], *([] if value is None else layout.encode_text(value)), s["eot"]]

    def codes(name, begin="bov", end="eov"):
        return [s[begin], *(layout.code_offset + inputs[name].reshape(-1)), s[end]]

    body = {
        Task.T2V: lambda: text() + codes("video"),
        Task.I2V: lambda: text() + codes("image", "boi", "eoi") + codes("video"),
        Task.V2V: lambda: text() + codes("context") + codes("video"),
        Task.V2T: lambda: codes("video") + text(),
        Task.UNCOND: lambda: codes("video"),
    }[task]()
    return [s["bos"], s[task.value], *body, s["eos"]]


def target_block_length(layout, task, inputs):
    if task is Task.V2T:
        return len(layout.encode_text(inputs["text"]))
    return inputs["video"].size


# ---- id plan, text and codes


def test_id_plan(layout, text_tokenizer):
    text_vocab = text_tokenizer.get_vocab_size()
    assert layout.text_range == range(0, text_vocab)
    assert sorted(layout.special_ids.values()) == list(range(text_vocab, text_vocab + len(SPECIAL_TOKENS)))
    assert layout.code_offset == text_vocab + len(SPECIAL_TOKENS)
    assert layout.code_range == range(layout.code_offset, layout.code_offset + CODEBOOK)
    assert layout.vocab_size == layout.code_offset + CODEBOOK
    assert (layout.bos_id, layout.eos_id, layout.pad_id) == tuple(layout.special_ids[n] for n in ("bos", "eos", "pad"))
    assert layout.task_id("v2t") == layout.task_id(Task.V2T) == layout.special_ids["v2t"]
    probe = np.array([0, text_vocab - 1, text_vocab, layout.code_offset, layout.vocab_size - 1, layout.vocab_size])
    assert layout.is_text(probe).tolist() == [True, True, False, False, False, False]
    assert layout.is_code(probe).tolist() == [False, False, False, True, True, False]


@pytest.mark.parametrize("text", [
    "a red ball moves left", "über 猫 🎈 unseen Ωμέγα ☃\ttab", "", "<|bov|><|eos|> typed in",
])
def test_text_round_trip_keeps_text_ids_unchanged(layout, text_tokenizer, text):
    ids = layout.encode_text(text)
    assert ids.dtype == np.int64
    assert ids.tolist() == text_tokenizer.encode(text, add_special_tokens=False).ids
    assert layout.is_text(ids).all()
    assert layout.decode_text(ids) == text


def test_decode_text_rejects_non_text_ids(layout):
    with pytest.raises(LayoutError, match="not a text id"):
        layout.decode_text([5, layout.bov_id])


@pytest.mark.parametrize("t, seed", [(1, 0), (2, 1), (5, 2)])
def test_codes_round_trip(layout, t, seed):
    codes = grid(t, seed)
    codes[0, 0, 0], codes[-1, -1, -1] = 0, CODEBOOK - 1
    ids = layout.codes_to_ids(codes)
    assert ids.shape == (t * HW[0] * HW[1],) and layout.is_code(ids).all()
    assert ids[: HW[0] * HW[1]].tolist() == (codes[0].reshape(-1) + layout.code_offset).tolist()  # frame 0 first
    assert ids[1] - layout.code_offset == codes[0, 0, 1]  # raster order within a frame
    back = layout.ids_to_codes(ids)
    assert back.dtype == np.int64 and np.array_equal(back, codes)
    assert np.array_equal(layout.ids_to_codes(ids, t=t), codes)


@pytest.mark.parametrize("codes, message", [
    (np.full((1, *HW), CODEBOOK), "outside the codebook"),
    (np.full((1, *HW), -1), "outside the codebook"),
    (np.zeros((1, 4, 3), dtype=np.int64), r"expected a \(t, 3, 4\) code grid"),
    (np.zeros((0, *HW), dtype=np.int64), "t >= 1"),
    (np.zeros(HW, dtype=np.int64), "code grid"),
    (np.zeros((1, *HW), dtype=np.float32), "must be integers"),
])
def test_codes_to_ids_rejects_bad_grids(layout, codes, message):
    with pytest.raises(LayoutError, match=message):
        layout.codes_to_ids(codes)


def test_ids_to_codes_rejects_bad_ids(layout):
    ids = layout.codes_to_ids(grid(2))
    with pytest.raises(LayoutError, match="not whole 3x4 latent frames"):
        layout.ids_to_codes(ids[:-1])
    with pytest.raises(LayoutError, match="not whole"):
        layout.ids_to_codes([])
    with pytest.raises(LayoutError, match="at index 5 is not a video code"):
        layout.ids_to_codes(np.concatenate([ids[:5], [7], ids[6:]]))
    with pytest.raises(LayoutError, match="2 latent frames, expected 3"):
        layout.ids_to_codes(ids, t=3)


# ---- sequences


@pytest.mark.parametrize("task", list(Task))
def test_sequence_follows_the_template(layout, task):
    inputs = inputs_for(task)
    seq = layout.sequence(task, **inputs)
    assert seq.task is task and seq.input_ids.dtype == np.int64 and seq.loss_mask.dtype == bool
    assert seq.input_ids.tolist() == expected_ids(layout, task, inputs)


@pytest.mark.parametrize("task", list(Task))
def test_target_loss_mask_covers_the_generated_block_its_end_and_eos(layout, task):
    inputs = inputs_for(task)
    seq = layout.sequence(task, **inputs)
    targets = seq.input_ids[seq.loss_mask]
    n = target_block_length(layout, task, inputs)
    end = layout.eot_id if task is Task.V2T else layout.eov_id
    assert len(targets) == n + 2
    assert targets[-2:].tolist() == [end, layout.eos_id]
    check = layout.is_text if task is Task.V2T else layout.is_code
    assert check(targets[:-2]).all()
    assert not seq.loss_mask[: seq.prompt_length].any() and seq.loss_mask[seq.prompt_length:].all()
    labels = seq.labels()
    assert np.array_equal(labels[seq.loss_mask], targets) and (labels[~seq.loss_mask] == -100).all()


@pytest.mark.parametrize("task", list(Task))
def test_loss_on_all_covers_everything_but_bos(layout, task):
    seq = layout.sequence(task, **inputs_for(task), loss_on="all")
    assert not seq.loss_mask[0] and seq.loss_mask[1:].all()


@pytest.mark.parametrize("task", list(Task))
def test_loss_on_all_but_prompt_text_leaves_out_only_a_text_conditions_ids_and_its_end(layout, task):
    seq = layout.sequence(task, **inputs_for(task), loss_on="all_but_prompt_text")
    everything = layout.sequence(task, **inputs_for(task), loss_on="all").loss_mask
    ids = seq.input_ids
    if task in (Task.T2V, Task.I2V, Task.V2V):  # the caption is a condition
        begin, end = int(np.flatnonzero(ids == layout.bot_id)[0]), int(np.flatnonzero(ids == layout.eot_id)[0])
        assert end - begin - 1 > 0 and layout.is_text(ids[begin + 1:end]).all()
        assert not seq.loss_mask[begin + 1:end + 1].any()
        expected = everything.copy()
        expected[begin + 1:end + 1] = False
        assert np.array_equal(seq.loss_mask, expected)
    else:  # v2t's caption is its target; uncond has no text
        assert np.array_equal(seq.loss_mask, everything)


@pytest.mark.parametrize("task", list(Task))
def test_prompt_is_the_prefix_up_to_the_target_begin_marker(layout, task):
    inputs = inputs_for(task)
    seq = layout.sequence(task, **inputs)
    target = "text" if task is Task.V2T else "video"
    conditions = {k: v for k, v in inputs.items() if k != target}
    prompt = layout.prompt(task, **conditions)
    assert np.array_equal(prompt, seq.prompt)
    assert prompt[-1] == (layout.bot_id if task is Task.V2T else layout.bov_id)
    assert np.array_equal(seq.input_ids[: len(prompt)], prompt)
    with pytest.raises(LayoutError, match=f"unexpected \\['{target}'\\]"):
        layout.prompt(task, **inputs)


def test_sequence_input_errors(layout):
    with pytest.raises(LayoutError, match="missing video"):
        layout.sequence("t2v", text="a")
    with pytest.raises(LayoutError, match="missing image"):
        layout.sequence("i2v", text="a", video=grid(1))
    with pytest.raises(LayoutError, match="missing text"):
        layout.sequence("v2t", video=grid(1))
    with pytest.raises(LayoutError, match=r"unexpected \['image'\]"):
        layout.sequence("t2v", text="a", video=grid(1), image=grid(1))
    with pytest.raises(LayoutError, match="image: expected 1 latent frame"):
        layout.sequence("i2v", image=grid(2), video=grid(1))
    with pytest.raises(LayoutError, match="unknown task 'x2y'"):
        layout.sequence("x2y", video=grid(1))
    with pytest.raises(LayoutError, match="loss_on"):
        layout.sequence("uncond", video=grid(1), loss_on="video")
    with pytest.raises(LayoutError, match="not a text id"):
        layout.sequence("t2v", text=[1, layout.code_offset], video=grid(1))


@pytest.mark.parametrize("task", [Task.T2V, Task.I2V, Task.V2V])
def test_unconditional_form_is_the_same_task_with_an_empty_text_block(layout, task):
    inputs = inputs_for(task)
    cond = layout.sequence(task, **inputs)
    uncond = layout.sequence(task, **{**inputs, "text": None})
    assert np.array_equal(uncond.input_ids, layout.sequence(task, **{**inputs, "text": ""}).input_ids)
    assert uncond.input_ids.tolist() == expected_ids(layout, task, {**inputs, "text": None})
    bot = uncond.input_ids.tolist().index(layout.bot_id)
    assert uncond.input_ids[bot + 1] == layout.eot_id
    n_text = len(layout.encode_text(inputs["text"]))
    assert len(cond) - len(uncond) == n_text
    assert np.array_equal(cond.input_ids[cond.loss_mask], uncond.input_ids[uncond.loss_mask])
    parsed = layout.parse(uncond.input_ids)
    assert parsed.task is task and parsed.text == "" and parsed.text_ids.size == 0
    assert layout.prompt(task, **{k: v for k, v in inputs.items() if k not in ("text", "video")})[-1] == layout.bov_id


def test_uncond_task_is_video_only(layout):
    seq = layout.sequence("uncond", video=grid(2))
    assert not layout.is_text(seq.input_ids).any()
    assert layout.prompt("uncond").tolist() == [layout.bos_id, layout.task_id("uncond"), layout.bov_id]


# ---- parsing


@pytest.mark.parametrize("task", list(Task))
def test_parse_inverts_sequence(layout, task):
    inputs = inputs_for(task, text="über 猫 moves 🎈")
    seq = layout.sequence(task, **inputs)
    parsed = layout.parse(seq.input_ids)
    assert parsed.task is task
    for name, value in inputs.items():
        if name == "text":
            assert parsed.text == value
        else:
            assert np.array_equal(getattr(parsed, name), value)
    assert np.array_equal(layout.sequence(task, **parsed.inputs()).input_ids, seq.input_ids)
    padded = np.concatenate([[layout.pad_id] * 2, seq.input_ids, [layout.pad_id] * 3])
    assert np.array_equal(layout.parse(padded).inputs()["video"], parsed.video)


def test_full_video_joins_condition_and_generated_frames(layout):
    for task, condition in ((Task.I2V, "image"), (Task.V2V, "context")):
        inputs = inputs_for(task)
        full = layout.parse(layout.sequence(task, **inputs).input_ids).full_video()
        assert np.array_equal(full, np.concatenate([inputs[condition], inputs["video"]]))
    inputs = inputs_for(Task.T2V)
    assert np.array_equal(layout.parse(layout.sequence("t2v", **inputs).input_ids).full_video(), inputs["video"])


def _edit(ids, index, value=None):
    ids = list(ids)
    if value is None:
        del ids[index]
    else:
        ids[index] = value
    return ids


@pytest.mark.parametrize("mutate, message", [
    (lambda L, ids: _edit(ids, -4, 5), "video block at position 8: text 5 at index"),
    (lambda L, ids: _edit(ids, -4, L.vocab_size), "outside the vocabulary"),
    (lambda L, ids: _edit(ids, -4), "23 codes are not whole 3x4 latent frames"),
    (lambda L, ids: _edit(ids, 0, L.eos_id), r"expected <\|bos\|> at position 0"),
    (lambda L, ids: _edit(ids, 1, 3), "expected a task token at position 1"),
    (lambda L, ids: _edit(ids, 7, L.boi_id), r"expected <\|bov\|> at position 7, found <\|boi\|>"),
    (lambda L, ids: ids[:-1], r"ends before its <\|eos\|>"),
    (lambda L, ids: _edit(ids, -1, L.eov_id), r"expected <\|eos\|> at position 33, found <\|eov\|>"),
    (lambda L, ids: ids[:1], r"ends after <\|bos\|>, before its task token"),
    (lambda L, ids: ids[:-2], "ends inside or before its video block"),
    (lambda L, ids: ids + [L.eos_id], r"1 tokens after <\|eos\|>"),
    (lambda L, ids: ids[:7], "ends inside or before its video block"),
])
def test_parse_errors_are_clear(layout, mutate, message):
    seq = layout.sequence("t2v", text="a red ball", video=grid(2))
    assert seq.input_ids[7] == layout.bov_id and len(seq) == 34  # the positions the messages name
    with pytest.raises(LayoutError, match=message) as info:
        layout.parse(mutate(layout, seq.input_ids.tolist()))
    assert "\n" not in str(info.value)


def test_parse_checks_the_image_is_one_frame(layout):
    inputs = inputs_for(Task.I2V)
    ids = layout.sequence("i2v", **inputs).input_ids.tolist()
    boi = ids.index(layout.boi_id)
    ids[boi + 1: boi + 1] = layout.codes_to_ids(grid(1, 9)).tolist()
    with pytest.raises(LayoutError, match="2 latent frames, expected 1"):
        layout.parse(ids)


# ---- constrained decoding


def test_allowed_next_accepts_every_step_of_every_sequence(layout):
    for task in Task:
        ids = layout.sequence(task, **inputs_for(task)).input_ids
        for i in range(len(ids)):
            assert ids[i] in layout.allowed_next(ids[:i]), (task, i, layout.token_name(ids[i]))
        assert layout.allowed_next(ids).ranges == ((layout.pad_id, layout.pad_id + 1),)


def test_allowed_next_inside_a_video_block(layout):
    prompt = layout.prompt("t2v", text="a")
    per = HW[0] * HW[1]
    codes = layout.codes_to_ids(grid(2))
    assert layout.allowed_next(prompt).ranges == ((layout.code_offset, layout.vocab_size),)
    assert layout.eov_id not in layout.allowed_next(np.concatenate([prompt, codes[: per - 1]]))
    assert layout.eov_id in layout.allowed_next(np.concatenate([prompt, codes[:per]]))
    framed = layout.allowed_next(np.concatenate([prompt, codes[:per]]), frames=2)
    assert layout.eov_id not in framed and layout.code_offset in framed
    full = layout.allowed_next(np.concatenate([prompt, codes]), frames=2)
    assert full.ranges == ((layout.eov_id, layout.eov_id + 1),)
    mask = layout.allowed_next(prompt).mask(layout.vocab_size)
    assert mask.shape == (layout.vocab_size,) and mask.sum() == CODEBOOK and mask[layout.code_offset]


def test_allowed_next_starts_and_rejects_broken_prefixes(layout):
    assert layout.allowed_next([]).ranges == ((layout.bos_id, layout.bos_id + 1),)
    tasks = layout.allowed_next([layout.bos_id])
    assert sorted(i for i in range(layout.vocab_size) if i in tasks) == sorted(layout.task_id(t) for t in Task)
    left_padded = [layout.pad_id, layout.bos_id, layout.task_id("v2t")]
    assert layout.allowed_next(left_padded).ranges == ((layout.bov_id, layout.bov_id + 1),)
    done = layout.sequence("uncond", video=grid(1)).input_ids
    with pytest.raises(LayoutError, match=r"expected <\|eos\|> at position 16, found text 5"):
        layout.allowed_next(np.concatenate([done[:-1], [5]]))
    with pytest.raises(LayoutError, match="expected a task token"):
        layout.allowed_next([layout.bos_id, 5])
    with pytest.raises(LayoutError, match=r"expected <\|bos\|>"):
        layout.allowed_next([5])


@pytest.mark.parametrize("task", list(Task))
def test_random_constrained_decoding_always_parses(layout, task):
    rng = np.random.default_rng(task.value.encode()[0])
    conditions = {k: v for k, v in inputs_for(task).items() if k != ("text" if task is Task.V2T else "video")}
    ids = layout.prompt(task, **conditions).tolist()
    while not ids or ids[-1] != layout.eos_id:
        allowed = layout.allowed_next(ids, frames=2)
        singles = [lo for lo, hi in allowed.ranges if hi - lo == 1]
        if singles and (len(allowed.ranges) == 1 or rng.random() < 0.2):
            ids.append(singles[0])
        else:
            lo, hi = allowed.ranges[0]
            ids.append(int(rng.integers(lo, hi)))
    parsed = layout.parse(ids)
    assert parsed.task is task
    if task is not Task.V2T:
        assert parsed.video.shape == (2, *HW)


def test_allowed_ids_mask_and_membership():
    allowed = AllowedIds(((2, 4), (7, 8)))
    assert allowed.mask(10).nonzero()[0].tolist() == [2, 3, 7]
    assert [i for i in range(10) if i in allowed] == [2, 3, 7]


# ---- files and compatibility


def test_save_load_round_trip(layout, tmp_path):
    layout.save(tmp_path / "layout")
    loaded = TokenLayout.load(tmp_path / "layout")
    assert loaded == layout and loaded.to_dict() == layout.to_dict()
    meta = json.loads((tmp_path / "layout" / LAYOUT_FILE).read_text())
    assert meta["layout_version"] == 1 and meta["latent_hw"] == list(HW) and meta["video_tokenizer"] == IDENTITY
    assert meta["vocab_size"] == meta["code_offset"] + meta["codebook_size"]
    seq = layout.sequence("i2v", **inputs_for(Task.I2V))
    assert np.array_equal(loaded.sequence("i2v", **inputs_for(Task.I2V)).input_ids, seq.input_ids)
    assert loaded.parse(seq.input_ids).text == "a red ball moves left"


def test_transformers_reads_the_folder(layout, tmp_path):
    from transformers import PreTrainedTokenizerFast

    layout.save(tmp_path / "layout")
    hf = PreTrainedTokenizerFast.from_pretrained(str(tmp_path / "layout"))
    assert (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id) == (layout.bos_id, layout.eos_id, layout.pad_id)
    for name, token_id in layout.special_ids.items():
        assert hf.convert_tokens_to_ids(special_token(name)) == token_id
    assert set(hf.all_special_ids) == set(layout.special_ids.values())
    assert len(hf) == layout.code_offset  # codes are an id range, not 2**18 added tokens
    for text in captions(20, seed=5) + ["über 猫 🎈 unseen Ωμέγα"]:
        ids = hf(text)["input_ids"]
        assert ids == layout.encode_text(text).tolist()
        assert hf.decode(ids) == text


def test_build_from_any_tokenizer_json_keeps_its_ids(tmp_path):
    vocab = {"[UNK]": 0, "red": 1, "ball": 2, "moves": 3}
    word_level = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    word_level.save(str(tmp_path / "tokenizer.json"))
    layout = TokenLayout.build(load_text_tokenizer(tmp_path), codebook_size=16, latent_hw=(2, 2))
    assert layout.text_vocab_size == 4 and layout.bos_id == 4 and layout.code_offset == 4 + len(SPECIAL_TOKENS)
    assert layout.encode_text("red ball moves fast").tolist() == [1, 2, 3, 0]


def test_build_rejects_a_tokenizer_that_already_holds_the_special_tokens(layout, tmp_path):
    layout.save(tmp_path / "layout")
    with pytest.raises(LayoutError, match="already holds reelm special tokens"):
        TokenLayout.build(load_text_tokenizer(tmp_path / "layout"), codebook_size=CODEBOOK, latent_hw=HW)


@pytest.mark.parametrize("identity, message", [
    ({**IDENTITY, "codebook_size": 1024}, "codebook size 1024 does not match the token layout's 262144"),
    ({**IDENTITY, "latent_hw": (4, 4)}, r"latent grid \(4, 4\) does not match the token layout's \(3, 4\)"),
    ({**IDENTITY, "fingerprint": "beef"}, "fingerprint 'beef' does not match"),
    ({"latent_hw": [3, 4]}, "has no codebook_size"),
])
def test_check_video_tokenizer_mismatches(layout, identity, message):
    with pytest.raises(LayoutError, match=message) as info:
        layout.check_video_tokenizer(identity)
    assert "\n" not in str(info.value)


def test_check_video_tokenizer_accepts_a_matching_identity(layout):
    layout.check_video_tokenizer({"codebook_size": CODEBOOK, "latent_hw": (3, 4), "fingerprint": "f00d", "extra": 1})
    layout.check_video_tokenizer({"codebook_size": np.int64(CODEBOOK)})
    with pytest.raises(LayoutError):
        layout.check_video_tokenizer({"codebook_size": CODEBOOK + 1})


def test_build_checks_the_video_tokenizer(text_tokenizer):
    with pytest.raises(LayoutError, match="codebook size 1024"):
        TokenLayout.build(text_tokenizer, codebook_size=CODEBOOK, latent_hw=HW, video_tokenizer={"codebook_size": 1024})
    with pytest.raises(LayoutError, match="latent_hw"):
        TokenLayout.build(text_tokenizer, codebook_size=CODEBOOK, latent_hw=(3, 0))


def _rewrite(folder, **changes):
    path = folder / LAYOUT_FILE
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("changes, message", [
    ({"layout_version": 2}, "layout version 2, this reelm reads version 1"),
    ({"code_offset": 999}, "code_offset 999 disagrees"),
    ({"text_vocab_size": 100}, "special token <|bos|> has id"),
    ({"latent_hw": [3]}, r"latent_hw: expected \(h, w\)"),
])
def test_load_rejects_inconsistent_or_newer_layouts(layout, tmp_path, changes, message):
    layout.save(tmp_path / "layout")
    _rewrite(tmp_path / "layout", **changes)
    with pytest.raises(LayoutError, match=message.replace("|", r"\|")) as info:
        TokenLayout.load(tmp_path / "layout")
    assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)


def test_load_missing_files(layout, tmp_path):
    with pytest.raises(LayoutError, match="not a token layout folder"):
        TokenLayout.load(tmp_path)
    layout.save(tmp_path / "layout")
    (tmp_path / "layout" / "tokenizer.json").unlink()
    with pytest.raises(TextTokenizerError, match="tokenizer file not found"):
        TokenLayout.load(tmp_path / "layout")
    (tmp_path / "layout" / LAYOUT_FILE).write_text("{broken")
    with pytest.raises(ReelmError, match="not valid JSON"):
        TokenLayout.load(tmp_path / "layout")
