"""Distribution metrics against the user's own clips: --reference-data is read at the model's clip spec and
recorded in the protocol; a model not trained on the synthetic world is never scored against it."""

from __future__ import annotations

import json

import pytest

from conftest import make_model_folder
from eval_weights import write_tiny_torchscript_detector
from entry_points import run_cli
from reelm.core.errors import ReelmError
from reelm.data.clip_sampling import ClipSpec
from reelm.data.synthetic.world import SyntheticWorld, WorldConfig
from reelm.data.video_write import write_mp4
from reelm.eval.reference_data import check_reference, reference_from, trained_on_synthetic


@pytest.fixture(scope="module")
def real_clips(tmp_path_factory):
    """A folder of 5 uncaptioned MP4s (9 frames, 48 px) standing in for a user's clips, and a broken file."""
    folder = tmp_path_factory.mktemp("real")
    world = SyntheticWorld(WorldConfig(height=48, width=48, num_frames=9, seed=3, max_objects=1))
    for i in range(5):
        write_mp4(folder / f"clip{i}.mp4", world.clip(i).frames, 8)
    (folder / "broken.mp4").write_bytes(b"not a video")
    return folder


def test_the_synthetic_reference_is_refused_for_a_model_trained_on_other_data():
    assert trained_on_synthetic({"data": {"source": "synthetic:train", "world": {}}})
    check_reference({"data": {"source": "synthetic:train"}}, None)
    with pytest.raises(ReelmError, match="clips.jsonl.*--reference-data"):
        check_reference({"data": {"source": "clips.jsonl"}}, None)
    with pytest.raises(ReelmError, match="records no synthetic data"):
        check_reference({}, None)
    check_reference({"data": {"source": "clips.jsonl"}}, "my_clips/")  # its own reference: fine


def test_reference_clips_are_read_at_the_clip_spec_counted_and_hashed(real_clips):
    spec = ClipSpec(num_frames=9, fps=8.0, size=32)
    reference = reference_from(real_clips, spec, 4)
    assert len(reference.clips) == 4 and all(c.shape == (9, 32, 32, 3) for c in reference.clips)
    record = reference.record
    assert record["kind"] == "folder" and record["path"] == str(real_clips) and record["count"] == 4
    assert len(record["content_sha256"]) == 64
    assert reference_from(real_clips, spec, 4).record["content_sha256"] == record["content_sha256"]
    assert reference_from(real_clips, spec, 3).record["content_sha256"] != record["content_sha256"]
    everything = reference_from(real_clips, spec, 10)
    assert everything.record["count"] == 5 and sum(everything.record["skipped"].values()) == 1
    with pytest.raises(ReelmError, match="no usable clip of 33 frames"):
        reference_from(real_clips, ClipSpec(num_frames=33, fps=8.0, size=32), 4)


def test_eval_generate_scores_fvd_against_the_given_clips_and_refuses_the_world_otherwise(real_clips, tmp_path):
    model = make_model_folder(tmp_path)  # its reelm.json records no synthetic data
    detector = write_tiny_torchscript_detector(tmp_path / "i3d_torchscript.pt")
    args = ["eval", "generate", "--model", str(model), "--num-prompts", "2", "--num-samples", "1",
            "--image-to-video", "0", "--continuation", "0", "--captions", "0", "--binding-clips", "0",
            "--reference", "4", "--i3d", str(detector), "--no-progress"]
    refused = run_cli([*args, "--out", str(tmp_path / "refused")])
    assert refused.kind == "refused" and refused.error_lines == 1 and "--reference-data" in refused.message
    assert not (tmp_path / "refused").exists()  # refused before any sample was made
    used = run_cli([*args, "--reference-data", str(real_clips), "--out", str(tmp_path / "scored")])
    assert used.kind == "used", used
    fvd = json.loads((tmp_path / "scored" / "summary.json").read_text())["distribution"]["fvd"]
    assert fvd["computed"] and fvd["value"] >= 0
    recorded = fvd["protocol"]["reference_data"]
    assert recorded["kind"] == "folder" and recorded["count"] == 4 and recorded["path"] == str(real_clips)
