"""reelm.data: video I/O, datasets, the synthetic captioned video world, the token layout, shards.

- ``video_read`` / ``video_write`` / ``contact_sheet``: frames from and to files (PyAV), contact sheets
- ``sources``: video-text sources (folders, manifests, Hugging Face datasets, the synthetic world) as rows
- ``clip_sampling``: ``ClipSpec`` and a row -> fixed-size clips; ``row_reader``: rows -> clips, in workers;
  ``clip_stream``: endless resumable clip batches for tokenizer training
- ``synthetic``: the synthetic world (``world``), its scenes and vocabulary (``scene``), rendering
  (``render``, ``shapes``) and captions (``captions``)
- ``text_tokenizer``: the BPE text tokenizer; ``token_layout``: the one owner of LM token ids
- ``shards`` / ``shard_layout``: pre-tokenized Arrow shards; ``lm_data`` / ``packing``: task sequences
  packed into training blocks
"""
