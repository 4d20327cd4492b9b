"""``reelm lm export``: a trained LM step folder as a slim model folder — what inference needs, and a model card.

A step folder (:mod:`reelm.lm.lm_checkpoint`) is already a complete model, but it also carries
the training state: DeepSpeed's optimizer partition (about 3x the weights), the data position and
RNG of every rank. A LoRA run's step folder holds only the adapter and names its base: the export
merges the adapter into the base's weights, so it stands alone too. The export keeps the weights, the Hugging Face config, the text tokenizer, the
token layout, the video tokenizer and the clip spec (all that :func:`reelm.generation.model_folder.
load_model_folder` and ``AutoModelForCausalLM`` read), writes ``README.md``, a model card saying how
the model was trained, and makes every file readable by others (0644; safetensors writes 0600). The
folder is staged and renamed into place, so a crash never leaves half an export.

Follows: Hugging Face's ``save_pretrained`` folder and its model cards.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from reelm import __version__
from reelm.core.atomic import publish_dir, staging_path, write_text
from reelm.core.checkpoint_format import FILES_FILE, META_FILE, CheckpointError, read_meta, resolve_checkpoint
from reelm.lm.lm_checkpoint import KIND, TRAINER_STATE, VIDEO_TOKENIZER_DIR, load_weights
from reelm.lm.lora import ADAPTER_CONFIG, META_KEY as LORA_KEY, is_adapter_folder

CARD_FILE = "README.md"
TRAINING_STATE_PREFIXES = (TRAINER_STATE, "trainer-rank", "optimizer-rank")
TRAINING_ONLY_META = ("deepspeed", "world_size", "compiled", "schedule_plans", "skipped")
ADAPTER_FILES = (ADAPTER_CONFIG, "adapter_model.safetensors")


def export_model(source: str | Path, out: str | Path) -> Path:
    """Export the step folder ``source`` (or a run folder's latest checkpoint) to the new folder ``out``."""
    folder = resolve_checkpoint(source)
    meta = read_meta(folder, KIND)
    out = Path(out)
    if out.exists():
        raise CheckpointError(f"{out}: already exists; export into a new folder")
    if not (folder / VIDEO_TOKENIZER_DIR / META_FILE).is_file():
        raise CheckpointError(f"{folder}: holds no video tokenizer (made before reelm 0.2); an export needs one")
    staged = staging_path(out)
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    adapter = is_adapter_folder(folder)
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            shutil.copytree(path, staged / path.name)
        elif not path.name.startswith(TRAINING_STATE_PREFIXES) and path.name not in (FILES_FILE, META_FILE) and \
                not (adapter and path.name in ADAPTER_FILES):
            shutil.copy2(path, staged / path.name)
    exported = {key: value for key, value in meta.items() if key not in TRAINING_ONLY_META}
    if adapter:  # a LoRA run: the adapter merged into its base's weights, so the export stands alone
        load_weights(folder, meta, dtype="auto").save_pretrained(staged)
        exported["merged_lora"] = exported.pop(LORA_KEY)
    exported["exported_from"] = {"folder": str(folder.resolve()), "step": meta.get("step"),
                                 "reelm_version": __version__}
    write_text(staged / META_FILE, json.dumps(exported, indent=2, sort_keys=True) + "\n")
    write_text(staged / CARD_FILE, model_card(exported))
    files = {str(p.relative_to(staged)): p.stat().st_size for p in sorted(staged.rglob("*")) if p.is_file()}
    write_text(staged / FILES_FILE, json.dumps(files, indent=2, sort_keys=True) + "\n")
    _readable(staged)
    return publish_dir(staged, out)


def model_card(meta: dict) -> str:
    """A Markdown model card from an export's ``reelm.json``: the model, its data, how it was trained, how to use it."""
    config, train, data, clip = meta.get("config", {}), meta.get("train", {}), meta.get("data") or {}, \
        meta.get("clip") or {}
    mixture = train.get("mixture", {})
    lines = [
        "---", "library_name: reelm", "tags: [text-to-video, video-generation, autoregressive]", "---", "",
        "# reelm video LM", "",
        "A decoder-only LM over text tokens and video codes (the VideoPoet / MAGVIT-v2 recipe), with its video "
        "tokenizer in `video_tokenizer/`. Made with reelm " + str(meta.get("reelm_version", "?")) + ".", "",
        "## Model", "",
        f"- {config.get('num_layers')} layers, hidden size {config.get('hidden_size')}, {config.get('num_heads')} "
        f"heads; video positions: {'yes' if config.get('video_positions') else 'no'}",
        f"- clips: {clip.get('num_frames')} frames at {clip.get('fps')} fps, {clip.get('size')} x {clip.get('size')}",
        "", "## Training", "",
        f"- data: {data.get('source', 'not recorded')} ({data.get('clips', '?')} clips)",
        f"- {meta.get('step')} steps, {meta.get('tokens_seen', '?')} tokens; lr {train.get('lr')}, "
        f"blocks of {train.get('block_size')} x {train.get('micro_batch_size')}, precision {train.get('precision')}",
        "- task mixture: " + ", ".join(f"{k} {v}" for k, v in mixture.items() if k in ("t2v", "i2v", "v2v", "v2t",
                                                                                     "uncond")),
        *([f"- fine-tuned from: {train['init_from']}"] if train.get("init_from") else []),
        *([f"- LoRA rank {meta['merged_lora']['rank']} (alpha {meta['merged_lora']['alpha']}) on "
           f"{', '.join(meta['merged_lora']['target_modules'])}, merged into the weights"]
          if meta.get("merged_lora") else []),
        *([f"- last train loss: {meta['metrics']['loss']:.4f}"] if (meta.get("metrics") or {}).get("loss") else []),
        "", "## Use", "",
        "```bash", "reelm generate \"a red circle moves to the left\" --model THIS_FOLDER -o sample.mp4", "```", "",
        "```python", "from reelm.generation import VideoPipeline",
        "pipe = VideoPipeline.from_pretrained(\"THIS_FOLDER\")",
        "video = pipe(\"a red circle moves to the left\", seed=0).videos[0]", "```", "",
        "The LM alone loads with `AutoModelForCausalLM.from_pretrained` and its text tokenizer with "
        "`PreTrainedTokenizerFast.from_pretrained`.", "",
    ]
    return "\n".join(lines)


def _readable(root: Path) -> None:
    """Files 0644 and folders 0755: an export is meant to be shared."""
    for path in [root, *root.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
