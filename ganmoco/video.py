"""Video files in and out (PyAV, which carries FFmpeg in its wheel)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

from PIL import Image

from .files import atomic_output

MAX_VIDEO_PIXELS = 3840 * 2160


class VideoError(ValueError):
    """A file that is not a readable video; the message is one sentence for the user."""


def probe(path: str | os.PathLike) -> tuple[Fraction, int, tuple[int, int]]:
    """(frame rate, frame count or 0 if unknown, (width, height)) of the first video stream."""
    import av

    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.video:
                raise VideoError(f"'{os.fspath(path)}' has no video stream")
            if container.format.name == "image2" or container.format.name.endswith("_pipe"):
                raise VideoError(f"'{os.fspath(path)}' is a still image, not a video (use `ganmoco stylize` for it)")
            stream = container.streams.video[0]
            size = (stream.codec_context.width, stream.codec_context.height)
            rate = stream.average_rate or stream.guessed_rate or Fraction(25)
            return Fraction(rate), int(stream.frames or 0), size
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise VideoError(f"'{os.fspath(path)}' is not a readable video ({str(err).splitlines()[0]})") from None


def read_frames(path: str | os.PathLike, max_frames: int | None = None) -> Iterator[Image.Image]:
    """RGB frames of the first video stream."""
    import av

    _, _, (width, height) = probe(path)
    if width * height > MAX_VIDEO_PIXELS:
        raise VideoError(f"'{os.fspath(path)}' is {width}x{height}; videos up to 4K are supported")
    try:
        with av.open(os.fspath(path)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if max_frames is not None and index >= max_frames:
                    break
                yield frame.to_image().convert("RGB")
    except av.error.FFmpegError as err:
        raise VideoError(f"'{os.fspath(path)}' could not be decoded ({str(err).splitlines()[0]})") from None


def write_frames(frames: Iterable[Image.Image], path: str | os.PathLike, rate: Fraction) -> Path:
    """Encode frames as H.264 (yuv420p) into `path`, written to a temporary file first, then renamed."""
    import av

    path = Path(path)
    with atomic_output(path, path.suffix) as tmp, av.open(tmp, mode="w") as container:
        stream = None
        for frame in frames:
            if stream is None:
                stream = container.add_stream("libx264", rate=rate)
                # yuv420p needs even sizes
                stream.width, stream.height = frame.width - frame.width % 2, frame.height - frame.height % 2
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "18"}
            if frame.size != (stream.width, stream.height):
                frame = frame.crop((0, 0, stream.width, stream.height))
            for packet in stream.encode(av.VideoFrame.from_image(frame)):
                container.mux(packet)
        if stream is None:
            raise VideoError("the video has no frames")
        for packet in stream.encode():
            container.mux(packet)
    return path
