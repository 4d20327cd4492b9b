"""Trackers (``--report-to``): TensorBoard event files written by tiny tokenizer and LM trainings and read
back (scalars, reconstructions, ``--log-samples``' samples), the W&B and trackio adapters against fake
modules, the one-line error for a backend not installed, and a resumed run's purge of later events."""

from __future__ import annotations

import io
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reelm.cli import main
from reelm.core.errors import ReelmError
from reelm.core.metrics_log import MetricsLog
from reelm.core.trackers import open_trackers, resolve_report_to

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

CAPTIONS = ["a red circle moves to the left", "a blue square moves up", "a green circle moves up"]
CLIP = {"num_frames": 9, "fps": 8.0, "size": 32, "temporal_crop": "center", "clips_per_video": 1}


@pytest.fixture(scope="module", autouse=True)
def _isolated(single_thread_isolated):
    """One thread, and the launcher variables a training sets (RANK, ...) removed afterwards."""
    yield


def events(run: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def decoded(event) -> Image.Image:
    return Image.open(io.BytesIO(event.encoded_image_string))


def make_shards(out: Path) -> None:
    """A shard folder carrying a real (random) tiny video tokenizer, so its checkpoints generate videos."""
    import torch

    from reelm.data.shards import LAYOUT_DIR, VIDEO_TOKENIZER_DIR, chunk_name, part_dir, write_chunk, write_info
    from reelm.data.text_tokenizer import train_text_tokenizer
    from reelm.data.token_layout import TokenLayout
    from reelm.tokenizer.model import PRESETS, VideoTokenizer
    from reelm.tokenizer.tokenizer_checkpoint import save_tokenizer, tokenizer_identity

    torch.manual_seed(0)
    tokenizer = VideoTokenizer(PRESETS["tiny"]()).eval()
    save_tokenizer(tokenizer, out / VIDEO_TOKENIZER_DIR)
    identity = tokenizer_identity(tokenizer)
    layout = TokenLayout.build(train_text_tokenizer(CAPTIONS * 4, vocab_size=300),
                               codebook_size=tokenizer.codebook_size, latent_hw=(4, 4), video_tokenizer=identity)
    layout.save(out / LAYOUT_DIR)
    write_info(out, {"video_tokenizer": identity, "source": "test", "clip": CLIP})
    rng = np.random.default_rng(0)
    records = [{"codes": rng.integers(0, tokenizer.codebook_size, size=3 * 4 * 4).tolist(), "grid": [3, 4, 4],
                "caption": CAPTIONS[i % 3], "caption_ids": layout.encode_text(CAPTIONS[i % 3]).tolist(),
                "source": "test", "row": i, "clip": 0, "start": 0.0, "is_image": False, "attributes": ""}
               for i in range(8)]
    folder = part_dir(out, 0, 1)
    folder.mkdir(parents=True)
    write_chunk(folder / chunk_name(0), records, [])


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """Two LM steps reporting to TensorBoard, with a checkpoint (and its samples) at step 2."""
    root = tmp_path_factory.mktemp("lm")
    make_shards(root / "shards")
    code = main(["lm", "train", "--preset", "tiny", "--data", str(root / "shards"), "--out", str(root / "run"),
                 "--steps", "2", "--set", "block_size=128", "--set", "micro_batch_size=2", "--set", "log_every=1",
                 "--set", "val_every=0", "--set", "checkpoint_every=2", "--set", "warmup_steps=1",
                 "--set", "compile=false", "--peak-flops", "1e11", "--device", "cpu", "--no-progress",
                 "--report-to", "tensorboard", "--log-samples"])
    assert code == 0
    return root / "run"


def test_tokenizer_training_reports_losses_and_reconstructions_to_tensorboard(tmp_path):
    run = tmp_path / "tok"
    code = main(["tokenizer", "train", "--preset", "tiny", "--steps", "2", "--size", "32", "--num-frames", "5",
                 "--batch-size", "1", "--checkpoint-every", "2", "--set", "log_every=1", "--device", "cpu",
                 "--out", str(run), "--report-to", "tensorboard", "--no-progress"])
    assert code == 0
    found = events(run)
    assert [e.step for e in found.Scalars("train/loss")] == [1, 2]
    assert "train/psnr" in found.Tags()["scalars"]
    sheet, = found.Images("reconstructions/sheet")
    assert sheet.step == 2 and decoded(sheet).size == (sheet.width, sheet.height)
    video, = found.Images("reconstructions/video")
    gif = decoded(video)
    assert gif.format == "GIF" and gif.n_frames == 5 and gif.size == (2 * 32, 32)  # input | reconstruction


def test_lm_training_reports_losses_to_tensorboard(lm_run):
    found = events(lm_run)
    assert [e.step for e in found.Scalars("train/loss")] == [1, 2]
    assert {"train/lr", "train/tokens_per_s"} <= set(found.Tags()["scalars"])
    assert (lm_run / "metrics.jsonl").is_file()


def test_log_samples_logs_the_checkpoints_samples(lm_run):
    found = events(lm_run)
    sheet, = found.Images("samples/sheet")
    assert sheet.step == 2 and decoded(sheet).size[1] > 2 * 32  # two sample rows
    video, = found.Images("samples/video")
    gif = decoded(video)
    assert gif.n_frames == 9 and gif.size == (2 * 32, 32)  # the two samples side by side


def test_log_samples_needs_a_tracker(tmp_path, capsys):
    code = main(["lm", "train", "--preset", "tiny", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
                 "--log-samples"])
    assert code == 1 and "--log-samples needs a tracker" in capsys.readouterr().err


def test_tensorboard_flag_is_the_old_spelling_of_report_to(tmp_path):
    from reelm.cli import build_parser
    from reelm.commands import report_to

    for command in (["lm", "train", "--data", "D"], ["tokenizer", "train"]):
        args = build_parser().parse_args([*command, "--out", str(tmp_path), "--tensorboard"])
        assert report_to(args) == ("tensorboard",)
        assert report_to(build_parser().parse_args([*command, "--out", str(tmp_path)])) == ()


def test_report_to_names(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    monkeypatch.setitem(sys.modules, "trackio", None)
    assert resolve_report_to("none") == () and resolve_report_to(None) == ()
    assert resolve_report_to("all") == ("tensorboard",)
    assert resolve_report_to("tensorboard,none, tensorboard") == ("tensorboard",)
    with pytest.raises(ReelmError, match="choose from tensorboard, wandb, trackio, all or none"):
        resolve_report_to("mlflow")


@pytest.mark.parametrize("backend", ["wandb", "trackio", "tensorboard"])
def test_a_backend_not_installed_is_a_one_line_error(backend, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, backend, None)  # its import fails
    with pytest.raises(ReelmError, match=rf"--report-to {backend} needs the {backend} package \(pip install {backend}\)"):
        MetricsLog(tmp_path, enabled=False, report_to=backend)  # checked on every rank, not only rank 0
    code = main(["tokenizer", "train", "--preset", "tiny", "--out", str(tmp_path / "run"), "--report-to", backend])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and f"pip install {backend}" in err
    assert not (tmp_path / "run").exists()  # stopped before anything was built


class _Recorder:
    """Stands in for a tracker module: records every call made to it, returns media as tuples."""

    def __init__(self, name):
        self.calls = []
        self.module = types.ModuleType(name)
        for method in ("init", "log", "finish"):
            setattr(self.module, method, self._record(method))
        self.module.Image = lambda value, caption=None: ("Image", np.asarray(value).shape, caption)
        self.module.Video = lambda value, caption=None, format=None: (
            "Video", value.read()[:6] if hasattr(value, "read") else Path(value).read_bytes()[:6], caption, format)

    def _record(self, method):
        def call(*args, **kwargs):
            self.calls.append((method, args, kwargs))
            return self.module  # wandb.init returns a run with .log and .finish: the module serves as one
        return call


def _log_everything(tmp_path, name):
    log = MetricsLog(tmp_path / "myrun", enabled=True, report_to=name, config={"train": {"lr": 0.1}})
    log.write({"step": 3, "split": "val", "loss": 0.5, "note": "text is not a scalar"})
    log.trackers.image("samples/sheet", np.zeros((4, 6, 3), np.uint8), 3, caption="two prompts")
    log.trackers.video("samples/video", np.zeros((2, 4, 6, 3), np.uint8), 3, fps=8)
    log.close()


def test_wandb_adapter(monkeypatch, tmp_path):
    fake = _Recorder("wandb")
    monkeypatch.setitem(sys.modules, "wandb", fake.module)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    (tmp_path / "myrun").mkdir()
    _log_everything(tmp_path, "wandb")
    (method, _, init), *logs, finish = fake.calls
    assert method == "init" and init == {"project": "reelm", "name": "myrun", "dir": str(tmp_path / "myrun"),
                                         "config": {"train": {"lr": 0.1}}}
    assert logs[0] == ("log", ({"val/loss": 0.5},), {"step": 3})
    assert logs[1] == ("log", ({"samples/sheet": ("Image", (4, 6, 3), "two prompts")},), {"step": 3})
    assert logs[2] == ("log", ({"samples/video": ("Video", b"GIF89a", None, "gif")},), {"step": 3})
    assert finish[0] == "finish" and len(logs) == 3


def test_trackio_adapter(monkeypatch, tmp_path):
    fake = _Recorder("trackio")
    monkeypatch.setitem(sys.modules, "trackio", fake.module)
    monkeypatch.setenv("TRACKIO_PROJECT", "mine")
    _log_everything(tmp_path, "trackio")
    (method, _, init), *logs, finish = fake.calls
    assert method == "init" and init == {"project": "mine", "name": "myrun", "config": {"train": {"lr": 0.1}}}
    assert logs[0] == ("log", ({"val/loss": 0.5},), {"step": 3})
    assert logs[1] == ("log", ({"samples/sheet": ("Image", (4, 6, 3), "two prompts")},), {"step": 3})
    assert logs[2] == ("log", ({"samples/video": ("Video", b"GIF89a", None, None)},), {"step": 3})
    assert finish[0] == "finish"


def test_only_rank_0_reports(monkeypatch, tmp_path):
    fake = _Recorder("wandb")
    monkeypatch.setitem(sys.modules, "wandb", fake.module)
    trackers = open_trackers("wandb,tensorboard", tmp_path, enabled=False)
    trackers.scalars({"train/loss": 1.0}, 1)
    trackers.close()
    assert not trackers and fake.calls == [] and not (tmp_path / "tensorboard").exists()


def test_a_resumed_run_replaces_tensorboard_events_past_its_checkpoint(tmp_path):
    log = MetricsLog(tmp_path, enabled=True, report_to="tensorboard")
    for step in (1, 2, 3, 4):
        log.write({"step": step, "split": "train", "loss": float(step)})
    log.close()
    resumed = MetricsLog(tmp_path, enabled=True, report_to="tensorboard")
    resumed.truncate_after(2)  # the checkpoint it resumes from is step 2
    resumed.write({"step": 3, "split": "train", "loss": 30.0})
    resumed.close()
    assert [(e.step, e.value) for e in events(tmp_path).Scalars("train/loss")] == [(1, 1.0), (2, 2.0), (3, 30.0)]
