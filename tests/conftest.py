"""Shared pytest fixtures.

``real_media``: the folder of real clips named by the ``REELM_TEST_MEDIA`` environment
variable; tests using it skip cleanly when it is unset or missing. The clips are never
copied into the repository.

``bad_media``: the bad-media corpus of ``tests/bad_media.py`` made once per session,
``{case name: path}``; ``media_env``: the tiny models the entry points of
``tests/entry_points.py`` run with.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def real_media() -> Path:
    folder = os.environ.get("REELM_TEST_MEDIA")
    if not folder:
        pytest.skip("REELM_TEST_MEDIA is not set")
    path = Path(folder)
    if not path.is_dir():
        pytest.skip(f"REELM_TEST_MEDIA={folder} is not a folder")
    return path


@pytest.fixture(scope="module")
def single_thread_isolated():
    """One torch thread (OpenMP threads stall when another process holds a core) and the
    environment restored afterwards (training sets launcher variables such as RANK)."""
    saved_env, saved_threads = dict(os.environ), torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved_threads)
    os.environ.clear()
    os.environ.update(saved_env)


LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE", "LOCAL_SIZE")


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a ``reelm`` child process: one OpenMP thread, none of the launcher variables a
    training in this process may have left, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def free_port() -> str:
    """A free local TCP port for a launcher's rendezvous: tests run in parallel (pytest -n), so never the
    launchers' fixed default 29500."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def load_bench_script(name: str):
    """A benchmark script of ``scripts/bench/`` as a module: they are not part of the installed package."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"reelm_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


MODEL_CLIP = {"num_frames": 9, "fps": 8.0, "size": 32, "temporal_crop": "center", "clips_per_video": 1}
MODEL_CAPTIONS = [f"a {c} {s} moves {d}" for c in ("red", "blue", "green") for s in ("circle", "square")
                  for d in ("to the left", "up")]


def make_model_folder(root: Path, *, seed: int = 0) -> Path:
    """A model folder as ``reelm lm train`` exports it, made in seconds without training: a random tiny video
    tokenizer (32 x 32 x 9 clips, a 4 x 4 latent grid), a BPE fitted on a few captions, a small random LM."""
    from reelm.data.text_tokenizer import train_text_tokenizer
    from reelm.data.token_layout import TokenLayout
    from reelm.lm.lm_checkpoint import export_lm
    from reelm.lm.model import LMConfig, build_model
    from reelm.tokenizer.tokenizer_checkpoint import save_tokenizer, tokenizer_identity
    from reelm.tokenizer.model import PRESETS, VideoTokenizer

    torch.manual_seed(seed)
    tokenizer = VideoTokenizer(PRESETS["tiny"]()).eval()
    save_tokenizer(tokenizer, root / "tok")
    text = train_text_tokenizer(MODEL_CAPTIONS * 4, vocab_size=300)
    layout = TokenLayout.build(text, codebook_size=tokenizer.codebook_size, latent_hw=(4, 4),
                               video_tokenizer=tokenizer_identity(tokenizer))
    cfg = LMConfig(hidden_size=64, num_layers=2, num_heads=2, max_position_embeddings=512)
    model = build_model(cfg, layout.vocab_size, bos_id=layout.bos_id, eos_id=layout.eos_id, pad_id=layout.pad_id)
    return export_lm(root / "model", model, layout, cfg, video_tokenizer=root / "tok", clip=MODEL_CLIP, step=0)


@pytest.fixture(scope="session")
def bad_media(tmp_path_factory) -> dict[str, Path]:
    from bad_media import make_corpus

    return make_corpus(tmp_path_factory.mktemp("bad_media"))


@pytest.fixture(scope="session")
def media_env(tmp_path_factory):
    from entry_points import build_env

    return build_env(tmp_path_factory.mktemp("media_env"))
