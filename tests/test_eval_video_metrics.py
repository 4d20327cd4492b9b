"""FVD / KVD through the registry: protocol record, caching, clip policy, streaming.

Most tests use a tiny TorchScript detector with i3d_torchscript.pt's call signature (32-d
features: a 1024 x 1024 ``sqrtm`` takes seconds on a shared CPU); one runs the full random-weight
InceptionI3d from a pytorch-i3d-style state dict end to end.
"""

import json
import weakref

import numpy as np
import pytest

from eval_weights import write_i3d, write_tiny_torchscript_detector
from reelm.eval.clip_input import ClipInputError
from reelm.eval.distribution.features import FeatureSet, FeatureSetError
from reelm.eval.distribution.frechet import frechet_distance, gaussian_stats
from reelm.eval.distribution.i3d import load_i3d
from reelm.eval.distribution.kernel import subset_mmd2
from reelm.eval.distribution.registry import compute, extract
from reelm.eval.distribution.video_metrics import i3d_features

SIZE = 16
RES = {"resolution": SIZE}


@pytest.fixture(scope="module")
def i3d(tmp_path_factory, single_thread_isolated):
    return write_i3d(tmp_path_factory.mktemp("i3d"), size=SIZE)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, single_thread_isolated):
    return write_tiny_torchscript_detector(tmp_path_factory.mktemp("tiny") / "i3d_torchscript.pt")


def _clips(n, frames=16, seed=0, shift=0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.integers(0, 200, (n, frames, SIZE, SIZE, 3)) + shift, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def sets():
    return {"generated": _clips(5, frames=17, seed=1, shift=40), "reference": _clips(4, seed=2)}


@pytest.mark.slow
def test_fvd_with_the_i3d_state_dict_records_its_protocol(i3d, sets):
    """1024-d features: the 1024 x 1024 sqrtm takes 2-30 s on the shared 2-core CPU."""
    result = compute("fvd_16f", sets["generated"], sets["reference"], i3d_path=i3d["pt"], batch_size=2, **RES)
    json.dumps(result)
    assert result["computed"] and result["metric"] == "fvd" and result["per_sample"] is None
    p = result["protocol"]
    assert p["name"] == "fvd_16f" and p["implementation"].startswith("reelm.eval fvd")
    assert p["detector"]["sha256"] == load_i3d(i3d["pt"]).sha256 and p["detector"]["format"] == "pytorch-i3d-state-dict"
    assert p["detector"]["feature_dim"] == 1024 and p["detector"]["resolution"] == SIZE
    assert p["detector"]["frames_per_clip"] == 16 and p["overrides"] == {"resolution": SIZE}
    assert p["counts"]["generated"]["clips"] == 5 and p["counts"]["generated"]["truncated_clips"] == 5
    assert p["counts"]["reference"]["clips"] == 4 and p["statistics"]["dtype"] == "float64"
    assert set(p["environment"]["versions"]) >= {"torch", "numpy", "scipy", "torchmetrics"}
    assert np.isfinite(result["value"]) and result["value"] > 0 and not p["statistics"]["eps_used"]


def test_fvd_equals_the_frechet_of_the_features_is_deterministic_and_zero_for_identical_sets(tiny, sets):
    first = compute("fvd_16f", sets["generated"], sets["reference"], i3d_path=tiny)
    assert compute("fvd_16f", sets["generated"], sets["reference"], i3d_path=tiny)["value"] == first["value"]
    detector_record = first["protocol"]["detector"]
    assert detector_record["format"] == "torchscript" and detector_record["feature_dim"] == 32
    detector = load_i3d(tiny)
    gen = i3d_features(sets["generated"], detector, name="g")
    ref = i3d_features(sets["reference"], detector, name="r")
    expected = frechet_distance(*gaussian_stats(gen.features), *gaussian_stats(ref.features)).distance
    assert first["value"] == pytest.approx(expected, rel=1e-12) and first["value"] > 0
    same = compute("fvd_16f", sets["reference"], sets["reference"], i3d_path=tiny)
    assert abs(same["value"]) < 1e-6 * first["value"]


def test_cached_reference_features_give_the_same_number_and_are_checked(tiny, i3d, sets, tmp_path):
    reference = extract("fvd_16f", sets["reference"], i3d_path=tiny)
    reference.save(tmp_path / "ref.safetensors")
    cached = FeatureSet.load(tmp_path / "ref.safetensors")
    np.testing.assert_array_equal(cached.features, reference.features)
    assert cached.extractor == reference.extractor and cached.counts == reference.counts
    direct = compute("fvd_16f", sets["generated"], sets["reference"], i3d_path=tiny)
    assert compute("fvd_16f", sets["generated"], cached, i3d_path=tiny)["value"] == direct["value"]
    generated = extract("fvd_16f", sets["generated"], i3d_path=tiny)
    assert compute("fvd_16f", generated, cached)["value"] == direct["value"]  # no weights needed
    with pytest.raises(FeatureSetError, match="different extractors"):
        compute("kvd_16f", sets["generated"][:2], cached, i3d_path=i3d["pt"], **RES)


def test_short_clips_are_refused_or_padded_by_the_padlast_protocol(tiny, sets):
    short = _clips(3, frames=9, seed=3)
    with pytest.raises(ClipInputError, match="clip 0 has 9 frames; fvd_16f needs 16"):
        compute("fvd_16f", short, sets["reference"], i3d_path=tiny)
    padded = compute("fvd_16f_padlast", short, sets["reference"], i3d_path=tiny)
    assert padded["computed"] and padded["protocol"]["counts"]["generated"]["padded_clips"] == 3
    assert "padded" in padded["protocol"]["counts"]["generated"]["short_clips"]
    repeated = np.concatenate([short, np.repeat(short[:, -1:], 7, axis=1)], axis=1)
    assert compute("fvd_16f", repeated, sets["reference"], i3d_path=tiny)["value"] == padded["value"]


def test_without_weights_the_result_says_why(sets, tmp_path):
    result = compute("fvd_16f", sets["generated"], sets["reference"])
    assert not result["computed"] and result["value"] is None and "no I3D weights" in result["reason"]
    missing = compute("kvd_16f", sets["generated"], sets["reference"], i3d_path=tmp_path / "absent.pt")
    assert not missing["computed"] and "not found" in missing["reason"]


def test_kvd_records_subsets_and_equals_subset_mmd(tiny, sets):
    result = compute("kvd_16f", sets["generated"], sets["reference"], i3d_path=tiny, num_subsets=5)
    stats = result["protocol"]["statistics"]
    assert stats["num_subsets"] == 5 and stats["subset_size"] == 4 and stats["seed"] == 0
    assert result["protocol"]["overrides"] == {"num_subsets": 5}
    detector = load_i3d(tiny)
    gen = i3d_features(sets["generated"], detector, name="g")
    ref = i3d_features(sets["reference"], detector, name="r")
    expected = subset_mmd2(ref.features, gen.features, num_subsets=5, max_subset_size=1000, seed=0)
    assert result["value"] == expected.mean and result["values"]["per_subset"] == list(expected.per_subset)
    again = compute("kvd_16f", sets["generated"], sets["reference"], i3d_path=tiny, num_subsets=5)
    assert again["value"] == expected.mean


def test_clips_stream_through_in_batches(tiny, sets):
    detector = load_i3d(tiny)
    alive, worst = [], [0]

    def clips():
        for clip in sets["generated"]:
            copy = clip.copy()
            alive.append(weakref.ref(copy))
            worst[0] = max(worst[0], sum(r() is not None for r in alive))
            yield copy

    streamed = i3d_features(clips(), detector, name="g", batch_size=2)
    whole = i3d_features(sets["generated"], detector, name="g", batch_size=5)
    np.testing.assert_allclose(streamed.features, whole.features, rtol=1e-5, atol=1e-6)
    assert worst[0] <= 3  # one batch of 2 plus the clip being yielded
    mixed = i3d_features([sets["generated"][:2], sets["generated"][2]], detector, name="g", batch_size=2)
    np.testing.assert_allclose(mixed.features, streamed.features[:3], rtol=1e-5, atol=1e-6)


def test_bad_clip_input_is_one_line_error(tiny):
    with pytest.raises(ClipInputError, match="generated: item 0 is float32"):
        compute("fvd_16f", [np.zeros((16, 8, 8, 3), np.float32)], _clips(2), i3d_path=tiny)
