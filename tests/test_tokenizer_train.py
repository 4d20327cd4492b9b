"""Tokenizer training, resume, and the encode / decode / reconstruct commands."""

import dataclasses
import json
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from reelm.core.checkpoint_format import list_checkpoints
from reelm.cli import main
from reelm.core.config import apply_overrides
from reelm.data.synthetic.world import SyntheticWorld, WorldConfig
from reelm.data.video_write import write_mp4
from reelm.tokenizer.codes_file import load_codes, save_codes
from reelm.tokenizer.model import PRESETS
from reelm.tokenizer.train import TokenizerTrainConfig, train

SMALL_CLIPS = ["train.clip.num_frames=5", "train.clip.size=32", "train.batch_size=2", "train.warmup_steps=2"]


def _cfg(steps, **overrides):
    cfg = TokenizerTrainConfig(steps=steps, checkpoint_every=2, log_every=1)
    return apply_overrides(cfg, [s.split(".", 1)[1] for s in SMALL_CLIPS] + [f"{k}={v}" for k, v in overrides.items()])


def _raw(run):
    return load_file(str(list_checkpoints(run)[-1][1] / "raw_model.safetensors"))


def test_resume_continues_exactly(tmp_path):
    model_cfg = PRESETS["tiny"]()
    train(tmp_path / "straight", model=model_cfg, config=_cfg(4, ema_decay=0.9), progress=False)
    train(tmp_path / "resumed", model=model_cfg, config=_cfg(4, ema_decay=0.9), progress=False, stop_at=2)
    assert [s for s, _ in list_checkpoints(tmp_path / "resumed")] == [2]
    # A save killed mid-way leaves a staging folder: resume must ignore it.
    (tmp_path / "resumed" / ".step-000004.partial").mkdir()
    train(tmp_path / "resumed", resume=True, progress=False)
    a, b = _raw(tmp_path / "straight"), _raw(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    assert [s for s, _ in list_checkpoints(tmp_path / "resumed")] == [2, 4]
    with pytest.raises(Exception, match="already holds checkpoints"):
        train(tmp_path / "resumed", model=model_cfg, config=_cfg(6), progress=False)


def test_a_fine_tune_starts_from_the_given_tokenizer_with_a_new_optimizer(tmp_path):
    train(tmp_path / "base", model=PRESETS["tiny"](), config=_cfg(2), progress=False)
    start = _raw(tmp_path / "base")
    # lr 0 and no weight decay: a fine-tune that cannot move keeps the weights it started from exactly.
    tuned = train(tmp_path / "tuned", config=_cfg(1, lr=0.0, init_from=str(tmp_path / "base")), progress=False)
    assert tuned.step == 1
    for key, value in _raw(tmp_path / "tuned").items():
        torch.testing.assert_close(value, start[key], rtol=0, atol=0, msg=key)
    fresh = _raw(tmp_path / "base")  # and from scratch the same steps do not
    train(tmp_path / "scratch", model=PRESETS["tiny"](), config=_cfg(1, lr=0.0, seed=1), progress=False)
    assert any(not torch.equal(v, fresh[k]) for k, v in _raw(tmp_path / "scratch").items())
    with pytest.raises(Exception, match="model config differs"):
        train(tmp_path / "bad", model=dataclasses.replace(PRESETS["tiny"](), channels=(8, 8, 16)),
              config=_cfg(1, init_from=str(tmp_path / "base")), progress=False)
    # From the command line: the model config comes from the folder, no --preset needed.
    assert main(["tokenizer", "train", "--init-from", str(tmp_path / "base"), "--out", str(tmp_path / "cli"),
                 "--steps", "1", "--set", "lr=0", *[f"--set={s}" for s in SMALL_CLIPS], "--no-progress"]) == 0
    saved = json.loads((list_checkpoints(tmp_path / "cli")[-1][1] / "train_config.json").read_text())
    assert saved["init_from"] == str(tmp_path / "base") and saved["steps"] == 1


@pytest.fixture(scope="module")
def clip_video(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    clip = SyntheticWorld(WorldConfig(height=64, width=64, num_frames=17, seed=3, textured_backgrounds=False)).clip(0)
    path = write_mp4(folder / "clip.mp4", clip.frames, fps=8)
    (folder / "clip.txt").write_text(clip.caption)
    return path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, clip_video):
    run = tmp_path_factory.mktemp("run")
    assert main(["tokenizer", "train", "--preset", "tiny", "--steps", "2", "--out", str(run), "--quiet",
                 "--set", "train.clip.num_frames=9", "--set", "train.clip.size=32", "--batch-size", "1"]) == 0
    return run


def test_encode_decode_reconstruct_commands(trained_run, clip_video, tmp_path, capsys):
    codes_path = tmp_path / "codes.npz"
    assert main(["tokenizer", "encode", str(clip_video), "--tokenizer", str(trained_run), "-o", str(codes_path)]) == 0
    codes, meta = load_codes(codes_path)
    assert codes.shape == (5, 8, 8) and meta["frames"] == 17 and meta["tokenizer"]["codebook_size"] > codes.max()
    out = tmp_path / "decoded.mp4"
    assert main(["tokenizer", "decode", str(codes_path), "--tokenizer", str(trained_run), "-o", str(out)]) == 0
    from reelm.data.video_read import read_video

    assert read_video(out).shape == (17, 64, 64, 3)
    recon = tmp_path / "recon.mp4"
    assert main(["tokenizer", "reconstruct", str(clip_video), "--tokenizer", str(trained_run), "-o", str(recon)]) == 0
    line = capsys.readouterr().out
    assert re.search(r"PSNR \d+\.\d+ dB, SSIM [-\d.]+", line)
    assert recon.with_suffix(".png").is_file()


def test_codes_file_errors_are_one_line(trained_run, tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    assert main(["tokenizer", "decode", str(bad), "--tokenizer", str(trained_run), "-o", str(tmp_path / "x.mp4")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("reelm: error:") and "bad.npz" in err and "\n" not in err
    # Codes from a tokenizer with another codebook are refused before decoding.
    foreign = tmp_path / "foreign.npz"
    save_codes(foreign, np.zeros((2, 4, 4), dtype=np.int32), {"tokenizer": {"codebook_size": 7}})
    assert main(["tokenizer", "decode", str(foreign), "--tokenizer", str(trained_run), "-o", str(tmp_path / "y.mp4")]) == 1
    assert "codebook" in capsys.readouterr().err
    missing = tmp_path / "nothing.mp4"
    assert main(["tokenizer", "encode", str(missing), "--tokenizer", str(trained_run), "-o", str(tmp_path / "z.npz")]) == 1
    assert "nothing.mp4" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_overfits_one_clip_to_28db(clip_video, tmp_path):
    """The issue's bar: the tiny tokenizer overfits one synthetic clip to >= 28 dB PSNR on CPU (in 150 steps, 32.0 dB;
    28 is crossed near step 75)."""
    cfg = apply_overrides(TokenizerTrainConfig(steps=150, data=str(clip_video.parent), checkpoint_every=150, log_every=10),
                          ["batch_size=1", "clip.temporal_crop=center", "lr=2e-3", "warmup_steps=20"])
    last = train(tmp_path / "overfit", model=PRESETS["tiny"](), config=cfg, progress=False).checkpoint
    from reelm.data.video_read import read_video
    from reelm.eval.reconstruction_metrics import psnr
    from reelm.tokenizer.tokenizer_checkpoint import load_tokenizer
    from reelm.tokenizer.video_codec import decode_codes, encode_video

    model = load_tokenizer(last)
    codes, _ = encode_video(model, clip_video)
    assert psnr(read_video(clip_video), decode_codes(model, codes)) >= 28.0


def test_resume_refuses_changed_settings_and_continues_a_finished_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["tokenizer", "train", "--preset", "tiny", "--steps", "2", "--out", str(run), "--no-progress",
                 *[a for s in SMALL_CLIPS for a in ("--set", s)]]) == 0
    # Every difference that would break exactness is listed; the checkpoint is left as it was.
    assert main(["tokenizer", "train", "--resume", "--out", str(run), "--steps", "2", "--set", "lr=3e-3",
                 "--set", "model.res_blocks=2"]) == 1
    err = capsys.readouterr().err.strip()
    assert "lr=0.003 (was 0.001)" in err and "model.res_blocks=2 (was 1)" in err and "\n" not in err
    assert [s for s, _ in list_checkpoints(run)] == [2]
    # A finished run continues to more steps: the schedule is re-planned, said in one line and recorded.
    assert main(["tokenizer", "train", "--resume", "--out", str(run), "--steps", "4", "--no-progress",
                 "--set", "log_every=2"]) == 0
    assert "continuing a finished run from step 2 (planned for 2) to 4" in capsys.readouterr().out
    from reelm.core.checkpoint_format import load_state

    state = load_state(list_checkpoints(run)[-1][1], "trainer_state")
    assert state["step"] == 4 and state["schedule_plans"] == [{"from_step": 0, "steps": 2},
                                                              {"from_step": 2, "steps": 4}]
    logged = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged == sorted(set(logged))  # no step logged twice


def test_set_values_are_checked_against_their_types(tmp_path, capsys):
    for bad, expected in (("lr=abc", 'lr=abc: expected a number, got "abc"'),
                          ("steps=1.5", "expected an integer"),
                          ("model.quantizer.nope=1", "unknown key 'nope'"),
                          ("clip=3", "'clip' is a section")):
        assert main(["tokenizer", "train", "--preset", "tiny", "--steps", "2", "--out", str(tmp_path / "x"),
                     "--set", bad]) == 1
        err = capsys.readouterr().err.strip()
        assert expected in err and err.startswith("reelm: error:") and "\n" not in err, (bad, err)
    assert not (tmp_path / "x").exists()


def test_a_folder_of_raw_videos_without_captions_trains_a_tokenizer(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    world = SyntheticWorld(WorldConfig(height=32, width=32, num_frames=9, seed=4))
    for i in range(2):
        write_mp4(folder / f"video{i}.mp4", world.clip(i).frames, fps=8)  # no .txt beside them
    run = tmp_path / "run"
    assert main(["tokenizer", "train", "--preset", "tiny", "--steps", "2", "--out", str(run), "--no-progress",
                 "--data", str(folder), "--size", "32", "--num-frames", "5", "--batch-size", "2"]) == 0
    assert [s for s, _ in list_checkpoints(run)] == [2] and not (run / "errors-rank0.jsonl").exists()


def test_the_synthetic_worlds_options_reach_tokenizer_training(tmp_path):
    run = tmp_path / "run"
    assert main(["tokenizer", "train", "--preset", "tiny", "--steps", "1", "--out", str(run), "--no-progress",
                 "--size", "32", "--num-frames", "5", "--batch-size", "1", "--max-objects", "1",
                 "--plain-backgrounds", "--split", "val"]) == 0
    from reelm.tokenizer.train import TokenizerTrainer, saved_configs

    _, cfg = saved_configs(run)
    assert (cfg.world.max_objects, cfg.world.textured_backgrounds, cfg.world.split) == (1, False, "val")
    assert (cfg.clip.size, cfg.clip.num_frames) == (32, 5)
    stream = TokenizerTrainer(PRESETS["tiny"](), cfg, tmp_path / "probe", progress=False).stream
    for index in range(6):
        attributes = stream.source.row(index).attributes
        assert len(attributes["objects"]) == 1 and attributes["background"]["kind"] == "plain"
        assert attributes["split"] == "val" and attributes["height"] == 32


def _clip_folder(folder, count=5):
    folder.mkdir()
    world = SyntheticWorld(WorldConfig(height=40, width=48, num_frames=14, seed=5))
    for i in range(count):
        write_mp4(folder / f"video{i}.mp4", world.clip(i).frames, fps=8)
    (folder / "broken.mp4").write_bytes(b"not a video")  # skipped and recorded, once, however it is read
    return folder


def _stream(folder, workers, log=None):
    from reelm.data.clip_sampling import ClipSpec, SkipLog
    from reelm.data.clip_stream import ClipStream
    from reelm.data.sources import open_source

    spec = ClipSpec(num_frames=5, size=32, fps=8.0, temporal_crop="random", clips_per_video=2)
    return ClipStream(open_source(str(folder)), spec, 3, seed=1, workers=workers, skip_log=SkipLog(log))


def test_dataloader_workers_decode_the_same_batches_in_the_same_order_and_resume(tmp_path):
    folder = _clip_folder(tmp_path / "clips")
    here = _stream(folder, 0, tmp_path / "here.jsonl")
    ahead = _stream(folder, 2, tmp_path / "ahead.jsonl")
    for _ in range(9):  # three epochs of 5 usable rows x 2 clips, in batches of 3
        torch.testing.assert_close(ahead.next_batch(), here.next_batch(), rtol=0, atol=0)
    assert ahead.epoch >= 2
    for log in ("here.jsonl", "ahead.jsonl"):
        assert [str(json.loads(line)["video"]).endswith("broken.mp4") for line in (tmp_path / log).read_text().splitlines()] \
            == [True]
    state = ahead.state_dict()  # the position of the rows consumed, not of those read ahead
    assert state == here.state_dict()
    resumed = _stream(folder, 1)
    resumed.load_state_dict(state)
    for _ in range(4):
        torch.testing.assert_close(resumed.next_batch(), here.next_batch(), rtol=0, atol=0)


def test_tokenizer_training_with_data_workers_gives_the_weights_of_decoding_between_steps(tmp_path):
    folder = _clip_folder(tmp_path / "clips", count=3)
    runs = {}
    for workers in (0, 1):
        run = tmp_path / f"w{workers}"
        assert main(["tokenizer", "train", "--preset", "tiny", "--steps", "2", "--out", str(run), "--no-progress",
                     "--data", str(folder), "--size", "32", "--num-frames", "5", "--batch-size", "2",
                     "--data-workers", str(workers)]) == 0
        runs[workers] = _raw(run)
    for key in runs[0]:
        torch.testing.assert_close(runs[1][key], runs[0][key], rtol=0, atol=0, msg=key)
    assert main(["tokenizer", "train", "--preset", "tiny", "--steps", "1", "--out", str(tmp_path / "bad"),
                 "--data-workers", "-1"]) == 1
