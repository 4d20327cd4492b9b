"""``reelm app``: the job queue, the server over real HTTP, and the page in a real browser.

The server runs on uvicorn on a free port of 127.0.0.1 over a tiny random model folder
(32 x 32 x 9 clips); requests are plain ``urllib``. The browser test drives Debian's headless
Chromium with Selenium through ``chromedriver`` (never a downloaded browser build) and skips
where either is missing; ``.ci/run`` installs them. With ``REELM_APP_SCREENSHOT=PATH`` it also
writes its screenshot there (README's ``docs/app.png``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from conftest import make_model_folder  # noqa: E402
from reelm.app.jobs import DONE, FAILED, JobQueue  # noqa: E402
from reelm.app.server import AppServer, create_app  # noqa: E402
from reelm.cli import main  # noqa: E402
from reelm.core.errors import ReelmError  # noqa: E402
from reelm.generation import VideoPipeline  # noqa: E402
from reelm.generation.outputs import frames_digest  # noqa: E402

SHAPE = (9, 32, 32, 3)  # the tiny model's clips: (T, H, W, 3)
SCREENSHOT_BYTES = 300_000


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("app_model"))


@pytest.fixture(scope="module")
def pipe(folder):
    return VideoPipeline.from_pretrained(folder, device="cpu")


class Gated:
    """The pipeline, its calls for the prompt ``hold`` held until :attr:`release` is set (so a test sees the
    queue while a job runs)."""

    def __init__(self, pipe, hold: str):
        self._pipe, self.hold, self.entered, self.release = pipe, hold, threading.Event(), threading.Event()
        self.prompts = []

    def __getattr__(self, name):
        return getattr(self._pipe, name)

    def __call__(self, prompt, **kwargs):
        self.prompts.append(prompt)
        if prompt == self.hold:
            self.entered.set()
            assert self.release.wait(60), "the test never released the pipeline"
        return self._pipe(prompt, **kwargs)


@contextlib.contextmanager
def serving(pipe, out: Path):
    server = AppServer("127.0.0.1", 0).start(create_app(pipe, out=out))
    try:
        yield server.url
    finally:
        server.stop()


def submit(url: str, body: bytes | None = None, **fields) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/api/jobs?{urllib.parse.urlencode(fields)}", data=body or b"",
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return answer.read()


def finished(url: str, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = json.loads(get(f"{url}/api/jobs/{job_id}"))
        if job["state"] in (DONE, FAILED):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {job}")


def decoded(data: bytes, tmp_path: Path) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 frames of a served video, decoded with PyAV."""
    path = tmp_path / f"served-{time.monotonic_ns()}.mp4"
    path.write_bytes(data)
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def test_a_prompt_becomes_a_video_a_contact_sheet_and_a_sidecar(pipe, tmp_path):
    with serving(pipe, tmp_path / "out") as url:
        page = get(url + "/")
        assert b'id="generate"' in page and b"://" not in page  # no external assets: the page works offline
        status, job = submit(url, prompt="a red circle moves to the left", seed="3", frames="9", guidance="2")
        assert status == 200 and job["state"] in ("queued", "running"), job
        job = finished(url, job["id"])
        assert job["state"] == DONE, job
        frames = decoded(get(url + job["video"]), tmp_path)
        (tmp_path / "sheet.png").write_bytes(get(url + job["sheet"]))
        sheet = Image.open(tmp_path / "sheet.png")
        sidecar = json.loads(get(url + job["sidecar"]))
    assert frames.shape == SHAPE
    assert sheet.format == "PNG" and sheet.width > 32
    facts = job["facts"]
    assert facts == {**sidecar, "sample_seed": str(sidecar["sample_seed"])}  # 64 bits: text, exact in the page
    assert (facts["prompt"], facts["seed"], facts["task"], facts["guidance_scale"]) == \
        ("a red circle moves to the left", 3, "t2v", 2.0)
    assert (facts["frames"], facts["height"], facts["width"], facts["fps"]) == (9, 32, 32, 8.0)
    # the same seed and settings make the same video as the library (and so `reelm generate --seed 3`)
    same = pipe("a red circle moves to the left", seed=3, num_frames=9, guidance_scale=2.0).videos[0]
    assert facts["frames_sha256"] == frames_digest(same)
    written = sorted(p.suffix for p in (tmp_path / "out").iterdir())
    assert written == [".json", ".mp4", ".png"]


def test_jobs_run_one_at_a_time_in_order_and_report_their_place(pipe, tmp_path):
    gated = Gated(pipe, hold="a red circle moves up")
    with serving(gated, tmp_path / "out") as url:
        first = submit(url, prompt="a red circle moves up")[1]
        assert gated.entered.wait(30)
        second = submit(url, prompt="a blue square moves to the left")[1]
        third = submit(url, prompt="a green circle moves up", frames="5")[1]
        assert (second["position"], third["position"]) == (1, 2)
        polled = [json.loads(get(f"{url}/api/jobs/{job['id']}")) for job in (first, second, third)]
        assert [(j["state"], j["position"]) for j in polled] == [("running", None), ("queued", 1), ("queued", 2)]
        gated.release.set()
        done = [finished(url, job["id"]) for job in (first, second, third)]
    assert [job["state"] for job in done] == [DONE] * 3
    assert gated.prompts == ["a red circle moves up", "a blue square moves to the left", "a green circle moves up"]
    assert done[2]["facts"]["frames"] == 5


def test_a_bad_upload_fails_with_the_clis_one_line_reason(pipe, folder, tmp_path, monkeypatch, capsys):
    (tmp_path / "clip.mp4").write_text("this is not a video\n")
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "a red circle", "--model", str(folder), "--video", "clip.mp4", "-o", "x.mp4",
                 "--device", "cpu", "--no-progress"]) == 1
    cli_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert cli_line.startswith("reelm: error: clip.mp4: not a video or image file"), cli_line
    with serving(pipe, tmp_path / "out") as url:
        status, job = submit(url, (tmp_path / "clip.mp4").read_bytes(), prompt="a red circle", filename="clip.mp4")
        assert status == 200
        job = finished(url, job["id"])
    assert job["state"] == FAILED
    assert job["message"] == cli_line.removeprefix("reelm: error: ")


@pytest.mark.parametrize("fields, reason", [
    ({"prompt": ""}, "nothing to generate from: type a prompt or choose an image or a clip"),
    ({"prompt": "a red circle", "seed": "one"}, "seed 'one': expected a whole number"),
    ({"prompt": "a red circle", "frames": "0"}, "frames 0: expected 1 .. 72"),
    ({"prompt": "a red circle", "guidance": "-1"}, "guidance -1.0: expected a number of 0 or more (1 = no guidance)"),
])
def test_bad_settings_are_refused_in_one_line(pipe, tmp_path, fields, reason):
    with serving(pipe, tmp_path / "out") as url:
        assert submit(url, **fields) == (400, {"error": reason})


@pytest.mark.parametrize("kind", ["image", "clip"])
def test_an_image_starts_the_video_and_a_clip_is_continued(pipe, tmp_path, kind):
    rng = np.random.default_rng(0)
    if kind == "image":
        name, task = "first.png", "i2v"
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / name)
    else:
        from reelm.data.video_write import write_mp4

        name, task = "start.mp4", "v2v"
        write_mp4(tmp_path / name, rng.integers(0, 255, SHAPE, dtype=np.uint8), 8.0)
    with serving(pipe, tmp_path / "out") as url:
        job = submit(url, (tmp_path / name).read_bytes(), prompt="", filename=f"C:\\fakepath\\{name}")[1]
        job = finished(url, job["id"])
        frames = decoded(get(url + job["video"]), tmp_path)
    assert job["state"] == DONE, job
    assert (job["facts"]["task"], job["facts"]["upload"], frames.shape) == (task, f"C:\\fakepath\\{name}", SHAPE)


def test_a_failing_job_reports_one_line_and_logs_the_traceback(caplog):
    def run(job):
        if job.request == "bug":
            raise RuntimeError("something broke\nsecond line")
        raise ReelmError("bad input: fix it")

    queue = JobQueue(run).start()
    try:
        bug, bad = queue.submit("bug"), queue.submit("bad")
        assert queue.wait(bug, 10) and queue.wait(bad, 10)
    finally:
        queue.close()
    assert (bug.state, bad.state) == (FAILED, FAILED)
    assert bug.message == "generation failed (RuntimeError: something broke); the server's log has the details"
    assert bad.message == "bad input: fix it"
    assert "Traceback" in caplog.text and "second line" in caplog.text


def test_reelm_app_prints_where_it_serves_and_binds_this_machine_only(folder, tmp_path, monkeypatch, capsys):
    served = []
    monkeypatch.setattr(AppServer, "run", lambda self, app: served.append((self.host, self.port, app)))
    log = logging.getLogger("reelm.app")
    monkeypatch.setattr(log, "handlers", [])  # the command adds its own; restored afterwards
    monkeypatch.setattr(log, "level", log.level)
    assert main(["app", "--model", str(folder), "--port", "0", "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    (host, port, _), = served
    assert host == "127.0.0.1" and port > 0
    assert f"reelm app: serving {folder} on http://127.0.0.1:{port} (Ctrl-C to stop; --host 0.0.0.0 to expose it " \
        "on your network)" in capsys.readouterr().out
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        with pytest.raises(ReelmError, match=r"--port \d+: already in use on 127.0.0.1; pick another --port"):
            AppServer("127.0.0.1", taken.getsockname()[1])


def test_without_fastapi_reelm_app_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)
    monkeypatch.delitem(sys.modules, "reelm.app.server")
    with pytest.raises(ReelmError, match=r"^reelm app needs FastAPI and uvicorn \(fastapi is not installed\): "
                                         r"pip install 'reelm\[app\]'$"):
        import reelm.app.server  # noqa: F401


# --- the page in a real browser --------------------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or \
    "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=960,1000", "--hide-scrollbars")
PLAYING = "const v = arguments[0]; return !v.paused && v.readyState >= 2 && v.currentTime > 0;"


@pytest.fixture
def browser(tmp_path):
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.skip("no chromium and chromedriver (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + (f"--user-data-dir={tmp_path / 'chromium-profile'}",):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_page_plays_the_video_in_a_real_browser(pipe, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60, poll_frequency=0.05)
    gated = Gated(pipe, hold="a red circle moves to the left")
    (tmp_path / "clip.mp4").write_text("this is not a video\n")
    with serving(gated, tmp_path / "out") as url:
        browser.get(url)
        assert browser.title == "reelm app"
        assert browser.find_element(By.ID, "frames").get_attribute("value") == "9"
        prompt, generate = browser.find_element(By.ID, "prompt"), browser.find_element(By.ID, "generate")
        # a bad upload: its one-line reason on the page
        browser.find_element(By.ID, "file").send_keys(str(tmp_path / "clip.mp4"))
        generate.click()
        failed = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".job[data-state=failed] .error"))
        assert failed[0].text.startswith("clip.mp4: not a video or image file"), failed[0].text
        assert "\n" not in failed[0].text
        browser.execute_script("document.getElementById('file').value = ''")
        # two prompts in a row: the second waits its turn, visibly
        prompt.send_keys("a red circle moves to the left")
        generate.click()
        assert gated.entered.wait(30)
        prompt.clear()
        prompt.send_keys("a blue square moves up")
        generate.click()
        wait.until(lambda d: d.execute_script(
            "return [...document.querySelectorAll('.job .status')].map(s => s.textContent)") ==
            ["queued: 1 ahead", "running", "failed"])
        gated.release.set()
        videos = wait.until(lambda d: (lambda vs: vs if len(vs) == 2 and all(d.execute_script(PLAYING, v) for v in vs)
                                       else None)(d.find_elements(By.CSS_SELECTOR, ".job video")))
        sizes = [browser.execute_script("return [arguments[0].videoWidth, arguments[0].videoHeight]", v) for v in videos]
        assert sizes == [[32, 32], [32, 32]]
        for video in videos:
            assert decoded(get(video.get_attribute("currentSrc")), tmp_path).shape == SHAPE
        sheets = browser.find_elements(By.CSS_SELECTOR, ".job img.sheet")
        assert all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", s) for s in sheets)
        facts = {th.text for th in browser.find_elements(By.CSS_SELECTOR, ".job table.facts th")}
        assert {"prompt", "seed", "frames", "guidance", "model"} <= facts
        browser.execute_script("window.scrollTo(0, 0)")
        shot = screenshot(browser, tmp_path / "app.png")
    if os.environ.get("REELM_APP_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["REELM_APP_SCREENSHOT"])


def screenshot(browser, path: Path) -> Path:
    """A PNG of the page under :data:`SCREENSHOT_BYTES` (the window shrunk until it fits)."""
    for width, height in ((960, 1500), (960, 1100), (880, 860)):
        browser.set_window_size(width, height)
        png = browser.get_screenshot_as_png()
        if len(png) < SCREENSHOT_BYTES:
            break
    path.write_bytes(png)
    assert len(png) < SCREENSHOT_BYTES, f"{path}: {len(png)} bytes"
    assert Image.open(path).format == "PNG"
    return path
