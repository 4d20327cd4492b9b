"""Prompt binding: does the LM read each attribute word of a prompt? A teacher-forced diagnostic, no sampling.

For real one-object clips of the synthetic world, the negative log-likelihood the LM gives the
clip's video codes after the first latent frame (latent frames 1+, where motion lives) under
the clip's own prompt, typed as a person types it ("a red circle moves to the left"), is
compared with the same clip's NLL under the prompt with one attribute swapped for another
value of the world's vocabulary (color, shape or motion, drawn at random). A model that reads
the word assigns the true clip a lower NLL under the true prompt:

    binding[attr] = mean over clips of NLL(codes | swapped prompt) - NLL(codes | true prompt)

in nats a clip, with a 95 % interval (normal approximation over clips) and the fraction of
clips whose NLL is higher under the wrong word (0.5 is a coin flip). Sampling settings cannot
move these numbers: they say what the model has learned, not what a sampler makes of it.

    from reelm.eval.prompt_binding import prompt_binding
    result = prompt_binding(pipe, world, num_clips=96, seed=0)   # pipe: a VideoPipeline
    result["attributes"]["motion"]["mean"], result["attributes"]["motion"]["higher_when_wrong"]
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from reelm.data.synthetic.captions import typed_prompt
from reelm.data.synthetic.world import SyntheticWorld, WorldConfig
from reelm.data.token_layout import Task

ATTRIBUTES = {"color": "colors", "shape": "shapes", "motion": "motions"}  # attribute -> the world's vocabulary field
BINDING_START = 50_000  # world indices of the clips scored: apart from every other eval's
BATCH = 16


@torch.inference_mode()
def prompt_binding(pipe, world: WorldConfig, *, num_clips: int = 96, seed: int = 0) -> dict:
    """The binding of every attribute the world varies (see the module docstring) over ``num_clips`` val clips."""
    source = SyntheticWorld(dataclasses.replace(world, split="val", max_objects=1))
    rng = np.random.default_rng([seed, 0xB1D])
    clips = [source.clip(BINDING_START + i) for i in range(num_clips)]
    grids = [pipe.encode(clip.frames) for clip in clips]
    true_prompts = [typed_prompt(clip.attributes["objects"][0]) for clip in clips]
    result = {"clips": num_clips, "measure": "NLL of latent frames 1+ under a prompt with one attribute swapped "
              "minus under the true prompt, nats a clip", "attributes": {}}
    base = _nll(pipe, true_prompts, grids)
    for attribute, field in ATTRIBUTES.items():
        choices = tuple(getattr(world, field))
        if len(choices) < 2:
            continue
        swapped = []
        for clip in clips:
            obj = dict(clip.attributes["objects"][0])
            obj[attribute] = choices[int(rng.choice([i for i, c in enumerate(choices) if c != obj[attribute]]))]
            swapped.append(typed_prompt(obj))
        delta = _nll(pipe, swapped, grids) - base  # (N,)
        half = 1.96 * float(delta.std(ddof=1)) / math.sqrt(len(delta)) if len(delta) > 1 else float("nan")
        result["attributes"][attribute] = {
            "mean": round(float(delta.mean()), 3), "interval": [round(float(delta.mean()) - half, 3),
                                                               round(float(delta.mean()) + half, 3)],
            "higher_when_wrong": round(float((delta > 0).mean()), 3)}
    return result


def _nll(pipe, prompts: list[str], grids: list[np.ndarray]) -> np.ndarray:
    """``(N,)`` summed NLL of each clip's codes after its first latent frame, given its prompt (batched, padded)."""
    layout, lm = pipe.layout, pipe.model.lm
    out = []
    for start in range(0, len(prompts), BATCH):
        seqs = [layout.sequence(Task.T2V, text=layout.encode_text(p), video=g)
                for p, g in zip(prompts[start:start + BATCH], grids[start:start + BATCH])]
        length = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), length), layout.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), length), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.from_numpy(s.input_ids)
            mask[i, :len(s)] = 1
        device = pipe.model.device
        logits = lm(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()  # (B, L, V)
        logp = torch.log_softmax(logits[:, :-1], dim=-1)  # predicts ids[:, 1:]
        for i, (s, grid) in enumerate(zip(seqs, grids[start:start + BATCH])):
            first = s.prompt_length + layout.codes_per_frame  # the first code of latent frame 1
            last = s.prompt_length + grid.size  # one past the video's last code
            targets = ids[i, first:last].to(device)
            out.append(-float(logp[i, first - 1:last - 1].gather(1, targets[:, None]).sum()))
    return np.asarray(out)
