"""The app's web server: a FastAPI app over one loaded pipeline, and uvicorn serving it on a bound socket.

:func:`create_app` takes a loaded :class:`~reelm.generation.VideoPipeline` and serves

- ``GET /``: the page (``page.html``: inline CSS and JS, no external assets);
- ``POST /api/jobs?prompt=&seed=&frames=&guidance=&filename=``: a request, the uploaded file (if
  any) as the raw body; answers the job's state, or 400 with ``{"error": one line}``;
- ``GET /api/jobs/{id}``: its state (``queued`` with ``position``, ``running``, ``done`` with
  its ``facts``, ``failed`` with ``message``); ``GET /api/jobs/{id}/video|sheet|sidecar``: its files.

Jobs run one at a time on one worker thread (:mod:`reelm.app.jobs`), started and stopped with
the app. :class:`AppServer` binds the socket before the model loads and uvicorn starts, so a port
in use fails at once and port 0 gives a free port whose URL is known; it serves in the foreground
(:meth:`AppServer.run`) or on a thread (:meth:`AppServer.start`, for tests).
"""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import tempfile
import threading
from importlib import resources
from pathlib import Path

from reelm.app.jobs import DONE, Job, JobQueue
from reelm.app.prompt_job import AppInputError, PromptRunner, parse_request
from reelm.core.errors import ReelmError, one_line_reason
from reelm.generation.pipeline import DEFAULT_GUIDANCE

try:
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
except ImportError as exc:  # the optional extra is not installed
    raise ReelmError(f"reelm app needs FastAPI and uvicorn ({exc.name} is not installed): "
                     "pip install 'reelm[app]'") from None

MAX_UPLOAD_BYTES = 512 * 2**20
FILES = {"video": "video/mp4", "sheet": "image/png", "sidecar": "application/json"}
JS_SAFE_INTEGER = 2**53 - 1  # Number.MAX_SAFE_INTEGER


def create_app(pipe, *, out: str | Path | None = None) -> FastAPI:
    """The app serving ``pipe``; samples go to ``out`` (default: a fresh temporary folder, ``app.state.out``)."""
    runner = PromptRunner(pipe, Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="reelm-app-")))
    queue = JobQueue(lambda job: runner(job.request, job.id))

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        queue.start()
        try:
            yield
        finally:
            queue.close()
            runner.close()

    app = FastAPI(title="reelm app", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.queue, app.state.out = queue, runner.out
    clip = pipe.model.clip
    defaults = {"model": str(pipe.model.path), "frames": clip.num_frames, "max_frames": runner.max_frames,
                "fps": clip.fps, "size": clip.size, "guidance": DEFAULT_GUIDANCE, "seed": 0}
    page = _page(defaults)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.post("/api/jobs")
    async def submit(request: Request):
        fields = dict(request.query_params)
        name = fields.get("filename") or None
        upload = runner.upload_path(name) if name else None
        try:
            if upload is not None:
                await _save_body(request, upload, name)
            job = queue.submit(parse_request(fields, max_frames=runner.max_frames, upload=upload,
                                             upload_name=name))
        except BaseException as exc:
            if upload is not None:
                runner.discard(upload)
            if not isinstance(exc, ReelmError):
                raise  # a dropped connection mid-upload, a bug: nothing of it stays behind
            return JSONResponse({"error": one_line_reason(exc)}, status_code=400)
        return _status(queue, job)

    @app.get("/api/jobs")
    def jobs() -> list[dict]:
        return [_status(queue, job) for job in queue.jobs()]

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str):
        job = queue.get(job_id)
        if job is None:
            return JSONResponse({"error": f"no job {job_id}"}, status_code=404)
        return _status(queue, job)

    @app.get("/api/jobs/{job_id}/{kind}")
    def job_file(job_id: str, kind: str):
        job = queue.get(job_id)
        if job is None or job.state != DONE or kind not in FILES:
            return JSONResponse({"error": f"no {kind} for job {job_id}"}, status_code=404)
        return FileResponse(getattr(job.result, kind), media_type=FILES[kind])

    return app


def _page(defaults: dict) -> str:
    html = resources.files("reelm.app").joinpath("page.html").read_text(encoding="utf-8")
    return html.replace("/*DEFAULTS*/null", json.dumps(defaults).replace("<", "\\u003c"))


async def _save_body(request: Request, path: Path, name: str) -> None:
    size = 0
    with open(path, "wb") as fh:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise AppInputError(f"{name}: larger than {MAX_UPLOAD_BYTES // 2**20} MiB; upload a shorter clip")
            fh.write(chunk)


def _status(queue: JobQueue, job: Job) -> dict:
    request = job.request
    status = {"id": job.id, "state": job.state, "position": queue.position(job), "message": job.message,
              "prompt": request.prompt, "upload": request.upload_name, "seconds": job.seconds}
    if job.state == DONE:
        status.update({kind: f"/api/jobs/{job.id}/{kind}" for kind in FILES})
        status["facts"] = _exact_in_js(json.loads(job.result.sidecar.read_text()))
    return status


def _exact_in_js(value):
    """``value`` with integers JavaScript cannot hold exactly (64-bit seeds) as text, so the page shows them right."""
    if isinstance(value, dict):
        return {key: _exact_in_js(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_exact_in_js(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > JS_SAFE_INTEGER:
        return str(value)
    return value


class AppServer:
    """uvicorn on ``host:port``, bound at once (so a port in use fails before a model loads; port 0: any free
    port, :attr:`url` says which), serving an app in the foreground (:meth:`run`) or on a thread (:meth:`start`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 7860):
        self.socket = bind(host, port)
        self.host, self.port = host, self.socket.getsockname()[1]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def run(self, app) -> None:
        """Serve ``app`` until Ctrl-C (uvicorn's shutdown lets the running job finish first)."""
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
        self._server.run(sockets=[self.socket])

    def start(self, app, timeout: float = 30.0) -> AppServer:
        """Serve ``app`` on a thread; returns once the server answers."""
        self._thread = threading.Thread(target=self.run, args=(app,), name="reelm-app-server", daemon=True)
        self._thread.start()
        for _ in range(int(timeout / 0.02)):
            if (self._server is not None and self._server.started) or not self._thread.is_alive():
                break
            threading.Event().wait(0.02)
        if self._server is None or not self._server.started:
            raise ReelmError(f"reelm app: the server did not start on {self.url}")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self.socket.close()


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (uvicorn listens on it), or a one-line reason."""
    if not 0 <= port <= 65535:
        raise ReelmError(f"--port {port}: expected 0 .. 65535 (0: any free port)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ReelmError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ReelmError(f"--port {port}: already in use on {host}; pick another --port (0: any free port)") \
                from None
        raise ReelmError(f"--host {host} --port {port}: cannot serve there ({exc.strerror})") from None
    sock.set_inheritable(True)
    return sock
