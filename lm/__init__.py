"""reelm.lm: the multimodal decoder-only LM over text tokens and video codes (token ids only, never pixels).

- ``model``: ``LMConfig``, presets, the Hugging Face model (with optional video positions)
- ``train``: pretraining under DeepSpeed (``ds_config``, ``deepspeed_setup``, ``loss_meter``, ``flops``, ``plots``)
- ``lm_checkpoint``: the model folder that stands alone, and training checkpoints
- ``engine`` / ``decode_step`` / ``constraints`` / ``sampling``: batched, constrained, guided generation
"""
