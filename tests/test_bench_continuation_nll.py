"""The continuation NLL bench scores the same held-out clips as a continuation and as text-to-video (tiny)."""

import numpy as np

from conftest import load_bench_script


def test_the_continuation_nll_bench_scores_the_same_clips_both_ways(tmp_path, capsys):
    import json

    from conftest import make_model_folder
    from reelm.data.shards import LAYOUT_DIR, chunk_name, part_dir, write_chunk, write_info
    from reelm.generation import VideoPipeline

    bench = load_bench_script("bench_continuation_nll")
    model = make_model_folder(tmp_path)
    layout = VideoPipeline.from_pretrained(model, device="cpu").layout
    shards = tmp_path / "shards"
    layout.save(shards / LAYOUT_DIR)
    write_info(shards, {"source": "test"})
    rng = np.random.default_rng(0)
    story = json.dumps({"story": {"context_latent_frames": 1}})
    rows = [{"codes": rng.integers(0, layout.codebook_size, size=3 * 16).tolist(), "grid": [3, 4, 4],
             "caption": "a red circle", "caption_ids": layout.encode_text("a red circle").tolist(), "source": "test",
             "row": i, "clip": 0, "start": 0.0, "is_image": False, "attributes": story if i % 2 else ""}
            for i in range(40)]
    folder = part_dir(shards, 0, 1)
    folder.mkdir(parents=True)
    write_chunk(folder / chunk_name(0), rows, [])
    capsys.readouterr()  # what loading printed
    bench.main(["--model", str(model), "--data", str(shards), "--val-fraction", "0.5"])
    report = json.loads(capsys.readouterr().out)
    nll = report["nll_per_code"]
    assert report["clips"] > 0 and set(nll) == {"t2v", "v2v", "t2v_no_text", "v2v_no_text"}
    assert all(value > 0 for value in nll.values())  # a random model: about log(codebook) a code
    gap = report["v2v_minus_t2v"]
    assert abs(gap["mean"] - (nll["v2v"] - nll["t2v"])) <= 2e-4 and 0 <= gap["share_of_clips_v2v_worse"] <= 1
