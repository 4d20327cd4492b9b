"""The text tokenizer: byte-level BPE training, exact round trips, caption sources, the CLI."""

import json
import random
import subprocess
import sys

import pytest
from tokenizers import Tokenizer

from reelm.cli import main
from reelm.data.text_tokenizer import (
    TextTokenizerError,
    load_text_tokenizer,
    read_captions,
    save_text_tokenizer,
    train_text_tokenizer,
)

WORDS = ["a", "the", "red", "blue", "green", "ball", "square", "circle", "moves", "bounces", "left", "right",
         "slowly", "quickly", "over", "under", "über", "café", "日本の", "猫", "🎈"]


def make_captions(count=300, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 10))) for _ in range(count)]


@pytest.fixture(scope="module")
def tokenizer():
    return train_text_tokenizer(make_captions(), vocab_size=400)


@pytest.mark.parametrize("text", [
    "a red ball moves left",
    "  leading and trailing spaces  ",
    "über café 日本の 猫 🎈",
    "never seen: Ωμέγα, ☃, \u00e9 vs e\u0301, tabs\tand\nnewlines",
    "<|bov|> looks special but is text",
    "",
])
def test_text_round_trip_is_exact(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    assert tokenizer.decode(ids, skip_special_tokens=False) == text


def test_training_learns_merges_within_the_vocab_size(tokenizer):
    size = tokenizer.get_vocab_size()
    assert 256 < size <= 400
    common = "a red ball moves left"
    assert len(tokenizer.encode(common).ids) < len(common.encode("utf-8"))


def test_training_is_deterministic_across_processes(tokenizer, tmp_path):
    again = train_text_tokenizer(make_captions(), vocab_size=400)
    assert again.to_str() == tokenizer.to_str()
    code = (
        "import sys; from tests_helper_captions import make;"
        "from reelm.data.text_tokenizer import train_text_tokenizer;"
        "sys.stdout.write(train_text_tokenizer(make(), vocab_size=400).to_str())"
    )
    (tmp_path / "tests_helper_captions.py").write_text(
        f"import random\nWORDS = {WORDS!r}\n"
        "def make():\n"
        "    rng = random.Random(0)\n"
        "    return [' '.join(rng.choice(WORDS) for _ in range(rng.randint(3, 10))) for _ in range(300)]\n",
        encoding="utf-8",
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout == tokenizer.to_str()


def test_different_captions_give_a_different_tokenizer(tokenizer):
    other = train_text_tokenizer(make_captions(seed=1), vocab_size=400)
    assert other.to_str() != tokenizer.to_str()


@pytest.mark.parametrize("kwargs", [{"vocab_size": 100}, {"vocab_size": 400, "min_frequency": 0}])
def test_bad_training_settings_raise(kwargs):
    with pytest.raises(TextTokenizerError):
        train_text_tokenizer(["a b c"], **kwargs)


def test_save_and_load_file_or_folder(tokenizer, tmp_path):
    path = save_text_tokenizer(tokenizer, tmp_path / "tok")
    assert path == tmp_path / "tok" / "tokenizer.json"
    for source in (path, tmp_path / "tok"):
        assert load_text_tokenizer(source).to_str() == tokenizer.to_str()


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(TextTokenizerError, match="not found"):
        load_text_tokenizer(tmp_path / "missing.json")
    bad = tmp_path / "tokenizer.json"
    for content in ("{not json", json.dumps({"version": "1.0", "model": {"type": "Nope"}})):
        bad.write_text(content)
        with pytest.raises(TextTokenizerError, match="not a valid tokenizers file") as info:
            load_text_tokenizer(tmp_path)
        assert "\n" not in str(info.value)


def test_read_captions_from_text_and_jsonl(tmp_path):
    text = tmp_path / "captions.txt"
    text.write_text("a red ball\n\n  über café \r\nlast line", encoding="utf-8")
    assert list(read_captions(text)) == ["a red ball", "  über café ", "last line"]
    manifest = tmp_path / "manifest.jsonl"
    records = [{"path": "v0.mp4", "caption": "a 猫"}, {"path": "v1.mp4", "caption": "b\nc"}]
    manifest.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n\n", encoding="utf-8")
    assert list(read_captions(manifest)) == ["a 猫", "b\nc"]


@pytest.mark.parametrize("content, message", [
    ('{"caption": "ok"}\n{broken\n', r"manifest.jsonl:2: not valid JSON"),
    ('{"caption": "ok"}\n{"text": "no caption"}\n', r"manifest.jsonl:2: record has no string \"caption\""),
])
def test_read_captions_names_the_bad_line(tmp_path, content, message):
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(content)
    with pytest.raises(TextTokenizerError, match=message):
        list(read_captions(manifest))


def test_read_captions_errors(tmp_path):
    with pytest.raises(TextTokenizerError, match="not found"):
        list(read_captions(tmp_path / "missing.txt"))
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(TextTokenizerError, match="not UTF-8"):
        list(read_captions(binary))


def test_cli_train_writes_a_loadable_tokenizer(tmp_path, capsys):
    captions = make_captions()
    source = tmp_path / "captions.txt"
    source.write_text("\n".join(captions) + "\n", encoding="utf-8")
    out = tmp_path / "text_tok"
    assert main(["text-tokenizer", "train", "--captions", str(source), "--vocab-size", "350", "--out", str(out)]) == 0
    assert "tokenizer.json" in capsys.readouterr().out
    loaded = load_text_tokenizer(out)
    assert loaded.to_str() == train_text_tokenizer(captions, vocab_size=350).to_str()
    assert isinstance(Tokenizer.from_file(str(out / "tokenizer.json")), Tokenizer)


def test_cli_train_from_jsonl_manifest(tmp_path):
    captions = make_captions(200, seed=3)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps({"caption": c}) for c in captions), encoding="utf-8")
    out = tmp_path / "tok"
    assert main(["text-tokenizer", "train", "--captions", str(manifest), "--vocab-size", "300", "--out", str(out)]) == 0
    assert load_text_tokenizer(out).to_str() == train_text_tokenizer(captions, vocab_size=300).to_str()


@pytest.mark.parametrize("setup, flags, message", [
    (None, ["--vocab-size", "300"], "caption source not found"),
    ("", ["--vocab-size", "300"], "holds no captions"),
    ("a b c\n", ["--vocab-size", "10"], "--vocab-size 10"),
])
def test_cli_errors_print_one_line(tmp_path, capsys, setup, flags, message):
    source = tmp_path / "captions.txt"
    if setup is not None:
        source.write_text(setup)
    code = main(["text-tokenizer", "train", "--captions", str(source), "--out", str(tmp_path / "o"), *flags])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("reelm: error: ") and message in err and err.count("\n") == 1
