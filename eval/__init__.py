"""reelm.eval: decoding samples and scoring them (reconstruction, generation, prompt adherence).

- ``reconstruct`` / ``roundtrip``: reconstruction evals; ``reconstruction_metrics``: PSNR and SSIM
- ``generation_eval``: samples from a model folder, scored; ``prompt_binding``: the teacher-forced diagnostic
- ``adherence`` with ``scene_reader`` (the synthetic world's inverse renderer): what frames and captions show
- ``temporal``: flicker, smoothness, dynamics; ``clip_score``: CLIPSIM; ``clip_input``: clip validation and batches
- ``distribution``: FVD / KVD / FID / KID / IS and their detectors (I3D, Inception), behind one ``registry``
- ``reports``: the HTML report page and the reconstruction and generation reports built on it
- ``provenance``: what every metric result records
"""
