"""PSNR and SSIM agree with scikit-image, the reference implementation."""

import numpy as np
import pytest

from reelm.eval.reconstruction_metrics import psnr, ssim

skimage_metrics = pytest.importorskip("skimage.metrics")


def _pair(seed=0, shape=(3, 40, 48, 3)):
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 256, size=shape).astype(np.uint8)
    noisy = np.clip(ref.astype(int) + rng.normal(0, 12, size=shape), 0, 255).astype(np.uint8)
    return ref, noisy


def test_psnr_matches_scikit_image():
    ref, out = _pair()
    assert psnr(ref, out) == pytest.approx(skimage_metrics.peak_signal_noise_ratio(ref, out, data_range=255), abs=1e-9)
    assert psnr(ref, ref) == float("inf")


@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_matches_scikit_image(seed):
    ref, out = _pair(seed)
    expected = np.mean([
        skimage_metrics.structural_similarity(
            r, o, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1
        )
        for r, o in zip(ref, out)
    ])
    assert ssim(ref, out) == pytest.approx(expected, abs=1e-6)
    assert ssim(ref, ref) == pytest.approx(1.0)


def test_shape_errors():
    ref, out = _pair()
    with pytest.raises(ValueError, match="cannot compare frames of shape"):
        psnr(ref, out[:2])
    with pytest.raises(ValueError, match="smaller than"):
        ssim(ref[:, :8, :8], out[:, :8, :8])


def test_chunked_accumulation_equals_the_whole_clip():
    from reelm.eval.reconstruction_metrics import ClipMetrics, ssim_per_frame

    ref, out = _pair(seed=3, shape=(13, 24, 20, 3))
    acc = ClipMetrics()
    for start in (0, 1, 6, 11):  # uneven chunks, as a streamed long video gives them
        stop = {0: 1, 1: 6, 6: 11, 11: 13}[start]
        acc.update(ref[start:stop], out[start:stop])
    assert acc.frames == 13
    assert acc.psnr() == pytest.approx(psnr(ref, out), abs=1e-9)
    assert acc.ssim() == pytest.approx(ssim(ref, out), abs=1e-12)
    per_frame = ssim_per_frame(ref, out)
    assert len(acc.frame_psnr) == 13 and acc.frame_ssim == pytest.approx(per_frame.tolist(), abs=1e-12)
    one = skimage_metrics.structural_similarity(ref[4], out[4], gaussian_weights=True, sigma=1.5,
                                                use_sample_covariance=False, data_range=255, channel_axis=-1)
    assert per_frame[4] == pytest.approx(one, abs=1e-6)
