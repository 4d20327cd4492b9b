"""reelm.app: the local web page of ``reelm app`` — type a prompt (or drop an image or a clip), set seed,
frames and guidance, and watch the video appear with its contact sheet and its sidecar's facts. It
serves a loaded :class:`reelm.generation.VideoPipeline`, so it sits above generation; FastAPI and
uvicorn are the optional extra ``reelm[app]``.

- ``jobs``: the FIFO job queue and its one worker thread (queued with a position, running, done, failed)
- ``prompt_job``: one submission checked, run on the pipeline and written as a sample (video, sheet, sidecar)
- ``server``: ``create_app(pipe)`` (FastAPI) and ``AppServer`` (uvicorn on a bound socket)
- ``page.html``: the page, inline CSS and JS, no external assets

Example::

    from reelm.app.server import AppServer, create_app
    from reelm.generation import VideoPipeline
    AppServer(create_app(VideoPipeline.from_pretrained("runs/lm")), port=7860).run()
"""
