"""The command line's surfaces: exit codes, --config FILE / --print-config, reelm env."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from reelm.cli import main


def _reelm(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reelm.cli", *argv], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_exit_codes_say_usage_error_run_failure_or_done(tmp_path, capsys):
    usage = _reelm("demo", "--no-such-flag")  # the process's own exit status
    assert usage.returncode == 2 and "unrecognized arguments" in usage.stderr
    assert main(["demo", "--config", str(tmp_path / "missing.yaml"), "--print-config"]) == 1
    assert capsys.readouterr().err.strip() == f"reelm: error: {tmp_path / 'missing.yaml'}: not found"
    assert main(["demo", "--print-config"]) == 0 and capsys.readouterr().out.startswith("# budget_minutes=15")


def test_a_config_file_sits_between_the_preset_and_set_and_print_config_reads_back(tmp_path, capsys):
    config = tmp_path / "lm.yaml"
    config.write_text("preset: tiny\nmodel:\n  num_layers: 3\ntrain:\n  lr: 0.01\n  steps: 7\n  mixture:\n    v2t: 0.2\n")
    args = ["lm", "train", "--data", str(tmp_path / "shards"), "--out", str(tmp_path / "run"), "--config", str(config)]
    assert main([*args, "--set", "lr=0.02", "--steps", "9", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["preset"] == "tiny" and printed["model"]["num_layers"] == 3
    assert printed["train"]["lr"] == 0.02 and printed["train"]["steps"] == 9  # flags win over the file
    assert printed["train"]["mixture"]["v2t"] == 0.2 and printed["train"]["betas"] == [0.9, 0.95]
    # What --print-config prints is a config file that resolves to itself (JSON works the same way).
    again = tmp_path / "printed.json"
    again.write_text(json.dumps(printed))
    assert main(["lm", "train", "--data", "x", "--out", str(tmp_path / "run"), "--config", str(again),
                 "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == printed


@pytest.mark.parametrize("text, message", [
    ("preset: tiny\nmodel:\n  num_layers: three\n", "lm.yaml: model.num_layers: expected an integer, got \"three\""),
    ("preset: tiny\ntrain:\n  stpes: 3\n", "lm.yaml: train: unknown config keys ['stpes']"),
    ("preset: tiny\nlr: 0.1\n", "lm.yaml: unknown sections ['lr']"),
    ("model: [1\n", "lm.yaml: not valid YAML at line 2"),
    ("- 1\n- 2\n", "lm.yaml: expected a mapping of settings at the top"),
    ("preset: huge\n", "unknown LM preset 'huge'"),
    ("train:\n  lr: 0.1\n", "--preset is required for a new run"),
])
def test_bad_config_files_are_one_line_errors_naming_the_file(tmp_path, capsys, text, message):
    config = tmp_path / "lm.yaml"
    config.write_text(text)
    code = main(["lm", "train", "--data", "x", "--out", str(tmp_path / "run"), "--config", str(config),
                 "--print-config"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("reelm: error: ") and message in err and err.count("\n") == 1


def test_the_tokenizer_and_the_demo_take_config_files_too(tmp_path, capsys):
    tok = tmp_path / "tok.json"
    tok.write_text(json.dumps({"preset": "tiny", "train": {"batch_size": 2, "clip": {"size": 32}}}))
    assert main(["tokenizer", "train", "--out", str(tmp_path / "t"), "--config", str(tok), "--batch-size", "3",
                 "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["batch_size"] == 3 and printed["train"]["clip"]["size"] == 32
    demo = tmp_path / "demo.yaml"
    demo.write_text("budget_minutes: 30\nlm_train:\n  steps: 400\neval_prompts: 8\n")
    assert main(["demo", "--config", str(demo), "--set", "eval_prompts=4", "--print-config"]) == 0
    out = capsys.readouterr().out
    printed = yaml.safe_load(out)
    assert printed["lm_train"]["steps"] == 400 and printed["eval_prompts"] == 4 and printed["budget_minutes"] == 30
    assert out.startswith("# budget_minutes=30 trains tokenizer_train.steps=1800, lm_train.steps=800")
    demo.write_text("lm_train:\n  stepz: 1\n")
    assert main(["demo", "--config", str(demo), "--print-config"]) == 1
    assert "demo.yaml: demo.lm_train: unknown config keys ['stepz']" in capsys.readouterr().err


def test_env_reports_what_a_bug_report_needs(capsys):
    assert main(["env", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    import torch

    assert facts["packages"]["torch"] == torch.__version__ and "transformers" in facts["packages"]
    assert facts["packages"]["flash-attn"] and facts["ffmpeg"]["libavcodec"].count(".") == 2
    would = facts["reelm_would_use"]
    assert would["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert would["attention"] in ("sdpa", "flash_attention_2") and isinstance(would["bf16_native"], bool)
    assert facts["cpu"]["capability"] == torch.backends.cpu.get_cpu_capability() and facts["cpu"]["name"]
    assert main(["env"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("packages.torch ") for line in lines)
    assert any(line.startswith("reelm_would_use.training_precision ") for line in lines)
