"""The prompt-binding diagnostic: teacher-forced NLL of a clip's codes under its own prompt and under a swapped one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import make_model_folder
from reelm.data.synthetic.world import WorldConfig
from reelm.data.token_layout import Task
from reelm.eval import prompt_binding as binding
from reelm.generation import VideoPipeline

WORLD = WorldConfig(height=32, width=32, num_frames=9, max_objects=1, textured_backgrounds=False)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return VideoPipeline.from_pretrained(make_model_folder(tmp_path_factory.mktemp("bind")), device="cpu")


def test_batched_nll_is_the_lm_loss_on_the_codes_after_the_first_latent_frame(pipe):
    rng = np.random.default_rng(0)
    h, w = pipe.layout.latent_hw
    grids = [rng.integers(0, pipe.layout.codebook_size, (3, h, w)) for _ in range(3)]
    prompts = ["a red circle moves to the left", "a blue square", "a green triangle stays still"]
    got = binding._nll(pipe, prompts, grids)
    for prompt, grid, nll in zip(prompts, grids, got):  # one sequence at a time, through HF's own loss
        seq = pipe.layout.sequence(Task.T2V, text=pipe.layout.encode_text(prompt), video=grid)
        labels = np.full(len(seq), -100)
        first = seq.prompt_length + h * w
        labels[first:seq.prompt_length + grid.size] = seq.input_ids[first:seq.prompt_length + grid.size]
        with torch.inference_mode():
            out = pipe.model.lm(input_ids=torch.from_numpy(seq.input_ids)[None], labels=torch.from_numpy(labels)[None])
        assert nll == pytest.approx(float(out.loss) * (grid.size - h * w), rel=1e-4)


def test_binding_reports_each_attribute_the_world_varies(pipe):
    result = binding.prompt_binding(pipe, WORLD, num_clips=6, seed=0)
    assert set(result["attributes"]) == {"color", "shape", "motion"} and result["clips"] == 6
    for value in result["attributes"].values():
        assert np.isfinite(value["mean"]) and value["interval"][0] <= value["mean"] <= value["interval"][1]
        assert 0 <= value["higher_when_wrong"] <= 1
    one_shape = binding.prompt_binding(pipe, dataclasses.replace(WORLD, shapes=("square",)), num_clips=4)
    assert set(one_shape["attributes"]) == {"color", "motion"}  # nothing to swap a square for
    again = binding.prompt_binding(pipe, WORLD, num_clips=6, seed=0)
    assert again == result  # seeded
