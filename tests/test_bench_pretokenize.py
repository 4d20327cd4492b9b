"""The pre-tokenization benchmark runs end to end and reports self-consistent figures (tiny settings, not timed)."""

import json

import pytest

from conftest import load_bench_script

bench_pretokenize = load_bench_script("bench_pretokenize")


@pytest.fixture(scope="module", autouse=True)
def _isolated(single_thread_isolated):
    yield


def test_bench_times_both_precisions_and_counts_the_codes_bf16_changes(capsys, monkeypatch):
    from reelm.core import device as device_module

    monkeypatch.setattr(device_module, "native_bf16", lambda device: True)  # bf16 autocast runs (emulated) anywhere
    bench_pretokenize.main(["--clips", "8", "--batch-size", "4", "--repeats", "1"])
    report = json.loads(capsys.readouterr().out)
    assert set(report["encode_clips_per_s"]) == set(report["tokenize_clips_per_s"]) == {"fp32", "bf16"}
    assert all(rate > 0 for rate in report["tokenize_clips_per_s"].values()) and report["render_clips_per_s"] > 0
    # the ratio is printed to 3 decimals: emulated bf16 makes it small, so allow its last digit's rounding
    assert report["over_fp32"]["bf16"] == pytest.approx(
        report["tokenize_clips_per_s"]["bf16"] / report["tokenize_clips_per_s"]["fp32"], rel=1e-2, abs=5e-4)
    differing = report["codes_differing_from_fp32"]["bf16"]
    assert differing["clips"] == 8 and 0 <= differing["codes"] <= differing["of"]
    assert differing["fraction"] == pytest.approx(differing["codes"] / differing["of"], abs=1e-5)
