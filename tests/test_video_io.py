"""Video I/O: write/read round trips, timestamp resampling, seeking, resize/crop,
streaming memory, still images, contact sheets, and one clear error per unreadable file."""

from __future__ import annotations

import os
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import av.logging
import numpy as np
import pytest
import torch
from PIL import Image

from reelm.data import video_read
from reelm.data.contact_sheet import contact_sheet, sample_indices
from reelm.data.video_read import (
    VideoReadError,
    frames_to_tensor,
    iter_frames,
    probe,
    read_video,
    tensor_to_frames,
)
from reelm.data.video_write import VideoWriteError, write_gif, write_mp4, write_video
from reelm.core.errors import ReelmError

STEP = 8  # brightness step of the counting clips: frame k is uniformly STEP * (k % 32)


def smooth_frames(t: int, h: int, w: int) -> np.ndarray:
    """Moving color gradients, easy for H.264: ``(t, h, w, 3)`` uint8."""
    tt, yy, xx = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
    channels = [
        128 + 90 * np.sin(xx / w * np.pi * 2 + tt * 0.2),
        128 + 90 * np.cos(yy / h * np.pi * 2 - tt * 0.15),
        60 + 150 * (xx + yy) / (w + h),
    ]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def write_counting_clip(
    path: Path, num: int, fps: int = 30, *, h: int = 32, w: int = 48, gop: int | None = None, options=None
) -> Path:
    """A clip whose frame k has brightness STEP * (k % 32); the container follows the suffix."""
    fmt = {".mkv": "matroska", ".mp4": "mp4"}[path.suffix]
    with av.open(str(path), "w", format=fmt, container_options=options or {}) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "10", **({"g": str(gop)} if gop else {})}
        frame = np.empty((h, w, 3), np.uint8)
        for k in range(num):
            frame[:] = STEP * (k % 32)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def frame_ids(frames) -> list[int]:
    return [int(round(float(f.mean()) / STEP)) for f in frames]


@pytest.fixture
def counting_clips(tmp_path):
    """The same 30 frames at 30 fps as MP4, and as Matroska with no duration anywhere in its header."""
    mp4 = write_counting_clip(tmp_path / "count.mp4", 30)
    mkv = write_counting_clip(tmp_path / "count.mkv", 30, options={"live": "1"})
    return {"mp4": mp4, "mkv": mkv}


# --- writing and round trips ------------------------------------------------------------


def test_mp4_round_trip(tmp_path):
    frames = smooth_frames(24, 64, 96)
    path = write_mp4(tmp_path / "clip.mp4", frames, fps=24)
    back = read_video(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert np.abs(back.astype(np.int16) - frames).mean() < 2.5
    info = probe(path)
    assert (info.width, info.height, info.num_frames, info.codec) == (96, 64, 24, "h264")
    assert info.fps == pytest.approx(24) and info.duration == pytest.approx(1.0)


def test_gif_round_trip(tmp_path):
    frames = smooth_frames(10, 40, 56)
    path = write_gif(tmp_path / "clip.gif", frames, fps=25)
    back = read_video(path)
    assert back.shape == frames.shape
    assert np.abs(back.astype(np.int16) - frames).mean() < 6  # a 256-color palette per frame
    assert probe(path).fps == pytest.approx(25)


def test_odd_sizes_are_padded_to_even(tmp_path):
    frames = smooth_frames(6, 33, 47)
    back = read_video(write_mp4(tmp_path / "odd.mp4", frames, fps=10))
    assert back.shape == (6, 34, 48, 3)
    assert np.abs(back[:, :33, :47].astype(np.int16) - frames).mean() < 5


def test_write_video_dispatches_on_suffix(tmp_path):
    frames = smooth_frames(4, 16, 16)
    assert probe(write_video(tmp_path / "a.MP4", frames, 8)).codec == "h264"
    assert probe(write_video(tmp_path / "a.gif", frames, 8)).codec == "gif"
    with pytest.raises(VideoWriteError, match="a.avi"):
        write_video(tmp_path / "a.avi", frames, 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.MP4", "a.gif"]


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_failed_write_leaves_nothing(tmp_path, monkeypatch, suffix):
    target = tmp_path / f"out{suffix}"
    frames = smooth_frames(8, 16, 16)
    with pytest.raises(VideoWriteError, match="frames must be"):
        write_video(target, frames.astype(np.float32), 8)
    with pytest.raises(VideoWriteError, match="fps"):
        write_video(target, frames, 0)

    calls = []

    def explode(frame, *args, **kwargs):  # fail mid-write, after the temp file exists
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("disk on fire")
        return original(frame, *args, **kwargs)

    original = av.VideoFrame.from_ndarray if suffix == ".mp4" else Image.fromarray
    if suffix == ".mp4":
        monkeypatch.setattr(av.VideoFrame, "from_ndarray", explode)
    else:
        monkeypatch.setattr(Image, "fromarray", explode)
    with pytest.raises(VideoWriteError, match="disk on fire"):
        write_video(target, frames, 8)
    assert len(calls) == 3
    assert list(tmp_path.iterdir()) == []

    target.write_bytes(b"previous")
    calls.clear()
    with pytest.raises(VideoWriteError):
        write_video(target, frames, 8)
    assert list(tmp_path.iterdir()) == [target] and target.read_bytes() == b"previous"


def test_write_into_missing_folder(tmp_path):
    with pytest.raises(VideoWriteError, match="does not exist"):
        write_mp4(tmp_path / "nope" / "a.mp4", smooth_frames(2, 16, 16), 8)


# --- timestamps: fps, start, num_frames --------------------------------------------------


@pytest.mark.parametrize("kind", ["mp4", "mkv"])
@pytest.mark.parametrize("fps", [10, 12, 30, 60])
def test_resample_takes_last_frame_at_or_before_each_time(counting_clips, kind, fps):
    frames = read_video(counting_clips[kind], fps=fps)
    # 30 source frames at 30 fps cover [0, 1) s: output k at k / fps shows frame floor(30 k / fps)
    expected = [int(Fraction(30 * k, fps)) for k in range(fps)]
    assert frame_ids(frames) == expected


def test_mkv_fixture_has_no_duration(counting_clips):
    info = probe(counting_clips["mkv"])
    assert info.duration is None and info.num_frames is None
    assert frame_ids(read_video(counting_clips["mkv"])) == list(range(30))


@pytest.mark.parametrize("kind", ["mp4", "mkv"])
def test_start_and_num_frames(counting_clips, kind):
    path = counting_clips[kind]
    assert frame_ids(read_video(path, start=0.5, num_frames=6)) == list(range(15, 21))
    assert frame_ids(read_video(path, start=0.5, fps=10)) == [15, 18, 21, 24, 27]
    assert frame_ids(read_video(path, start=0.51)) == list(range(15, 30))  # the frame showing at 0.51 s
    assert frame_ids(read_video(path, start=2 / 30, num_frames=2)) == [2, 3]  # Matroska stores frame 2 at 67 ms
    with pytest.raises(VideoReadError, match="after 2 s") as info:
        read_video(path, start=2.0)
    assert info.value.reason == video_read.NO_FRAMES


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_start_seeks_to_the_right_frame(tmp_path, suffix):
    path = write_counting_clip(tmp_path / f"gop{suffix}", 120, gop=10)  # keyframes every 10 frames
    frames = read_video(path, start=2.55, num_frames=4)  # 2.55 s is inside frame 76
    assert frame_ids(frames) == [(k % 32) for k in range(76, 80)]


def test_streaming_a_long_video_keeps_memory_bounded(tmp_path):
    path = tmp_path / "long.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        frame = np.zeros((240, 320, 3), np.uint8)
        for k in range(1500):
            frame[:] = STEP * (k % 32)
            frame[:, k % 320] = 255
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    full_size = 1500 * 240 * 320 * 3  # 345 MB decoded

    rss_page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * rss_page

    rss_before, rss_peak, count, last = rss(), 0, 0, None
    tracemalloc.start()
    try:
        for count, last in enumerate(iter_frames(path), start=1):
            assert last.shape == (240, 320, 3)
            if count % 100 == 0:
                rss_peak = max(rss_peak, rss())
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 1500
    assert frame_ids([last[:, :100]]) == [1499 % 32]
    assert traced_peak < full_size / 50
    assert rss_peak - rss_before < full_size / 5


# --- resize and crop ---------------------------------------------------------------------


def bars_image(h: int, w: int) -> np.ndarray:
    """White with black bars outside the centered square: ``(h, w, 3)`` uint8."""
    image = np.zeros((h, w, 3), np.uint8)
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    image[top : top + side, left : left + side] = 255
    return image


@pytest.mark.parametrize("hw", [(60, 80), (80, 60)])
def test_resize_shorter_side_then_center_crop(tmp_path, hw):
    h, w = hw
    path = write_gif(tmp_path / "bars.gif", np.stack([bars_image(h, w)] * 3), fps=10)  # lossless for 2 colors
    resized = read_video(path, size=30)
    assert resized.shape == (3, h // 2, w // 2, 3)
    assert resized[:, :2, :2].max() == 0 and resized[:, h // 4 - 2 : h // 4 + 2, w // 4 - 2 : w // 4 + 2].min() == 255

    square = read_video(path, size=30, crop=30)
    assert square.shape == (3, 30, 30, 3)
    assert square[:, 2:-2, 2:-2].min() >= 250  # the bars were cropped away
    assert read_video(path, size=30, crop=(20, 24)).shape == (3, 20, 24, 3)
    assert read_video(path, crop=40).shape == (3, 40, 40, 3)
    with pytest.raises(ReelmError, match="larger than"):
        read_video(path, size=30, crop=64)


def test_bad_options_are_reelm_errors(counting_clips):
    path = counting_clips["mp4"]
    for options in [{"fps": 0}, {"start": -1}, {"num_frames": 0}, {"size": 0}, {"crop": (1, 2, 3)}]:
        with pytest.raises(ReelmError):
            iter_frames(path, **options)


# --- still images, other codecs ------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_still_images_are_one_frame_clips(tmp_path, suffix):
    image = smooth_frames(1, 48, 64)[0]
    path = tmp_path / f"still{suffix}"
    Image.fromarray(image).save(path, quality=95)
    frames = read_video(path)
    assert frames.shape == (1, 48, 64, 3)
    assert np.abs(frames[0].astype(np.int16) - image).mean() < (0.01 if suffix == ".png" else 3)
    assert read_video(path, fps=30).shape == (1, 48, 64, 3)
    assert read_video(path, size=24, crop=24).shape == (1, 24, 24, 3)


@pytest.mark.parametrize(
    "fmt, codec, suffix", [("webm", "libvpx-vp9", ".webm"), ("avi", "mpeg4", ".avi"), ("matroska", "libx264", ".mkv")]
)
def test_other_containers_and_codecs(tmp_path, fmt, codec, suffix):
    frames = smooth_frames(12, 32, 48)
    path = tmp_path / f"clip{suffix}"
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=12)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.options = {"b": "2000000"} if codec == "mpeg4" else {"crf": "10"}
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    back = read_video(path)
    assert back.shape == frames.shape
    assert np.abs(back.astype(np.int16) - frames).mean() < 6


def test_tensor_conversion_round_trip():
    frames = smooth_frames(5, 8, 12)
    video = frames_to_tensor(frames)
    assert video.shape == (3, 5, 8, 12) and video.dtype == torch.float32
    assert video.min() >= -1 and video.max() <= 1
    assert video[1, 2, 3, 4].item() == pytest.approx(frames[2, 3, 4, 1] / 127.5 - 1)
    np.testing.assert_array_equal(tensor_to_frames(video), frames)
    batch = frames_to_tensor(torch.from_numpy(np.stack([frames, frames[::-1]])))
    assert batch.shape == (2, 3, 5, 8, 12)
    clamped = tensor_to_frames(torch.tensor([-3.0, 3.0]).view(1, 2, 1, 1).expand(3, 2, 1, 1))
    assert clamped[:, 0, 0].tolist() == [[0, 0, 0], [255, 255, 255]]


# --- unreadable files ------------------------------------------------------------------------


def _mp4_bytes(tmp_path) -> bytes:
    return write_mp4(tmp_path / "src.mp4", smooth_frames(40, 64, 64), fps=20).read_bytes()


def _garble(data: bytes, start: int, length: int) -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, length, dtype=np.uint8).tobytes()
    return data[:start] + noise + data[start + length :]


def make_broken(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / {"audio": "song.wav", "text_txt": "notes.txt", "zero": "zero.avi"}.get(kind, f"{kind}.mp4")
    if kind == "text_txt" or kind == "text_mp4":
        path.write_text("this is not a video\n" * 50)
    elif kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "audio":
        with av.open(str(path), "w") as out:
            stream = out.add_stream("pcm_s16le", rate=8000)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
            frame.sample_rate = 8000
            out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
    elif kind == "zero":
        with av.open(str(path), "w") as out:
            stream = out.add_stream("mpeg4", rate=10)
            stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
            out.start_encoding()
    elif kind == "cut_in_half":
        data = _mp4_bytes(tmp_path)
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbage_mid_stream":
        data = _mp4_bytes(tmp_path)
        mdat = data.index(b"mdat")
        moov = data.index(b"moov")
        path.write_bytes(_garble(data, mdat + (moov - mdat) // 2, (moov - mdat) // 4))
    elif kind == "cut_mkv":
        data = write_counting_clip(tmp_path / "src.mkv", 60).read_bytes()
        path = tmp_path / "cut.mkv"
        path.write_bytes(data[: len(data) * 2 // 3])
    return path


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("missing", video_read.NOT_FOUND),
        ("directory", video_read.NOT_MEDIA),
        ("text_mp4", video_read.NOT_MEDIA),
        ("text_txt", video_read.NOT_MEDIA),
        ("audio", video_read.NO_VIDEO_STREAM),
        ("empty", video_read.CORRUPT),
        ("cut_in_half", video_read.CORRUPT),
        ("garbage_mid_stream", video_read.CORRUPT),
        ("cut_mkv", video_read.CORRUPT),
        ("zero", video_read.NO_FRAMES),
    ],
)
def test_unreadable_files_give_one_clear_error(tmp_path, kind, reason):
    path = make_broken(kind, tmp_path)
    with pytest.raises(VideoReadError) as info:
        read_video(path)
    error = info.value
    assert error.reason == reason and error.path == path
    message = str(error)
    assert message.startswith(f"{path}: {reason}") and "\n" not in message

    if kind in ("missing", "text_mp4", "audio", "cut_in_half"):  # visible in the headers
        with pytest.raises(VideoReadError) as info:
            probe(path)
        assert info.value.reason == reason


def test_decoding_error_mid_stream_comes_after_the_good_frames(tmp_path):
    frames = iter_frames(make_broken("garbage_mid_stream", tmp_path))
    good = []
    with pytest.raises(VideoReadError) as info:
        for frame in frames:
            good.append(frame)
    assert info.value.reason == video_read.CORRUPT
    assert 0 < len(good) < 40


def test_ffmpeg_log_level_is_restored(counting_clips):
    before = av.logging.get_level()
    read_video(counting_clips["mp4"], num_frames=2)
    frames = iter_frames(counting_clips["mkv"])
    next(frames)
    frames.close()
    assert av.logging.get_level() == before


def test_the_same_bad_file_gives_the_same_reason_every_time(tmp_path):
    """PyAV drops a log line repeating the last one; a long-lived reader (``reelm app``) still gets FFmpeg's reason."""
    (tmp_path / "clip.mp4").write_text("this is not a video\n")
    reasons = []
    for _ in range(3):
        with pytest.raises(VideoReadError) as info:
            read_video(tmp_path / "clip.mp4")
        reasons.append(str(info.value))
    assert len(set(reasons)) == 1, reasons
    assert av.logging.get_skip_repeated()  # PyAV's own setting comes back


# --- contact sheets --------------------------------------------------------------------------


def test_contact_sheet_grid(tmp_path):
    colors = np.random.default_rng(0).integers(0, 256, (20, 3), dtype=np.uint8)
    real = np.broadcast_to(colors[:, None, None, :], (20, 16, 24, 3)).copy()  # frame k is colors[k]
    recon = 255 - real
    pad = 2
    path = contact_sheet([real, recon], tmp_path / "sheet.png", max_frames=5, pad=pad)
    sheet = np.asarray(Image.open(path).convert("RGB"))
    assert sheet.shape == (2 * 16 + 3 * pad, 5 * 24 + 6 * pad, 3)
    picked = sample_indices(20, 5)
    assert picked[0] == 0 and picked[-1] == 19 and np.all(np.diff(picked) > 0)
    for col, index in enumerate(picked):
        x = pad + col * (24 + pad)
        np.testing.assert_array_equal(sheet[pad : pad + 16, x : x + 24], real[index])
        np.testing.assert_array_equal(sheet[2 * pad + 16 : 2 * pad + 32, x : x + 24], recon[index])

    short = contact_sheet([real[:3]], tmp_path / "short.png", max_frames=8, pad=pad)
    assert np.asarray(Image.open(short)).shape[:2] == (16 + 2 * pad, 3 * 24 + 4 * pad)


def test_contact_sheet_labels(tmp_path):
    clip = np.full((4, 32, 32, 3), 128, np.uint8)
    plain = np.asarray(Image.open(contact_sheet([clip, clip], tmp_path / "plain.png")))
    labeled = np.asarray(Image.open(contact_sheet([clip, clip], tmp_path / "labeled.png", labels=["real", "recon"])))
    margin = labeled.shape[1] - plain.shape[1]
    assert margin > 0 and labeled.shape[0] == plain.shape[0]
    assert labeled[:, :margin].min() < 100  # dark text in the margin
    np.testing.assert_array_equal(labeled[:, margin:], plain)
    with pytest.raises(VideoWriteError, match="labels"):
        contact_sheet([clip], tmp_path / "bad.png", labels=["a", "b"])
    assert not (tmp_path / "bad.png").exists()
