"""Decoding videos for feature extraction: PyAV frames in presentation order, FFmpeg's `fps` frame selection,
the command line's rotation handling, and in-process FFmpeg filter chains for scaling and cropping.

Why PyAV (`av`, pinned in requirements.txt) and not the `ffmpeg` command line the authors called
(ILCACM's `src/util/extract_video_features.py` pipes `ffmpeg -vf fps=1,scale=W:H,crop=...` through ffmpeg-python):
* the wheel ships FFmpeg's own libraries (libavformat, libavcodec, libavfilter, libswscale), so `pip install`
  is the whole setup: no system `ffmpeg` binary, no version drift between machines;
* it reads every container and codec those libraries read;
* frames arrive in-process as numpy arrays: no raw-video pipe to parse, no subprocess per video;
* the pixel work is the command line's own: `FilterChain` runs the same libavfilter `scale`/`crop`/`transpose`
  filters in an in-process graph, and the frame selection (`fps_sample`) reproduces the `fps` filter's rule,
  checked against that filter in tests/test_video.py;
* a broken file is an exception for that file (`VideoError`), not a process exit status.

`fps_sample` is the rule of libavfilter/vf_fps.c (FFmpeg 4.1 onwards, default options): every input frame's
presentation time t is mapped to output slot q = round(t * fps) (round half away from zero, `round=near`); the
first output slot is q of the first frame (`start_time` unset); output slot n (time n / fps) shows the last input
frame with q <= n (later frames of one slot replace earlier ones, a frame spanning several slots is repeated); the
last slot is E - 1 with E = round(t_end * fps) (`eof_action=round`), where t_end is the end of the last frame
(its presentation time plus its duration: the end-of-stream time the command line passes to the filter graph,
fftools/ffmpeg_dec.c). The number of output frames is therefore E - q_first, which is 0 for a video shorter than
half a sampling step (at 1 fps: under 0.5 s); what the extractors do then is documented where they use the rule.

Times are those the command line filters: presentation timestamps shifted by the container's start time
(ffmpeg's default input timestamp offset), so selection follows the timestamps and variable frame rate works.
Frames without a timestamp get the previous frame's time plus its duration.
"""
from __future__ import annotations

import math
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

import av
import numpy as np

T = TypeVar('T')


class VideoError(ValueError):
    """A video that cannot be decoded (missing, unreadable, corrupt, no video frames); names the file."""


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded frame: presentation time and duration in seconds (exact), and the PyAV frame."""
    time: Fraction
    duration: Fraction
    frame: av.VideoFrame


@dataclass(frozen=True)
class VideoInfo:
    """Header facts of a video: its duration in seconds and its displayed size (after rotation)."""
    path: Path
    duration: float
    width: int
    height: int
    rotation: int          # clockwise degrees the display applies (0, 90, 180, 270)
    average_rate: Fraction | None


def round_near_inf(x: Fraction) -> int:
    """FFmpeg's AV_ROUND_NEAR_INF: nearest integer, halves away from zero."""
    return int(math.floor(abs(x) + Fraction(1, 2))) * (1 if x >= 0 else -1)


def fps_sample(frames: Iterable[tuple[Fraction, Fraction, T]], fps: Fraction) -> Iterator[tuple[int, T]]:
    """FFmpeg's `fps` filter on `(time, duration, item)` in presentation order: yields `(n, item)` for every output
    slot n (output time n / fps), streaming (module docstring has the rule)."""
    next_slot, held, end = None, None, None
    for time, duration, item in frames:
        slot = round_near_inf(time * fps)
        if held is not None:
            while next_slot < slot:       # frames[1]->pts > next_pts: output frames[0], else drop it
                yield next_slot, held
                next_slot += 1
        else:
            next_slot = slot              # first pts sets next_pts
        held, end = item, time + duration
    if held is None:
        return
    last_slot = round_near_inf(end * fps)  # status_pts with eof_action=round
    while next_slot < last_slot:
        yield next_slot, held
        next_slot += 1


def _reason(error: Exception) -> str:
    """FFmpeg's message without the file name PyAV appends (the VideoError names the file once)."""
    return getattr(error, 'strerror', None) or str(error)


@contextmanager
def open_video(path):
    """(container, first video stream) of `path`; any failure to open is a VideoError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: video file not found")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as error:
        raise VideoError(f"{path}: cannot open as a video ({_reason(error)})") from None
    try:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = 'AUTO'
        yield container, stream
    finally:
        container.close()


def _frame_duration(frame: av.VideoFrame, stream, previous_gap: Fraction | None) -> Fraction:
    """The command line's duration estimate: the frame's own duration, else the last timestamp gap, else one
    period of the stream's average frame rate (fftools/ffmpeg_dec.c `video_duration_estimate`)."""
    if frame.duration:
        return frame.duration * stream.time_base
    if previous_gap:
        return previous_gap
    return 1 / Fraction(stream.average_rate) if stream.average_rate else Fraction(0)


def decode(path) -> Iterator[DecodedFrame]:
    """Every frame of the first video stream, in presentation order, with its time and duration in seconds."""
    path = Path(path)
    with open_video(path) as (container, stream):
        # the command line's input offset: minus the file's start time, rounded to the stream's time base
        offset = round_near_inf(Fraction(container.start_time or 0, av.time_base) / stream.time_base) \
            * stream.time_base
        time, duration, gap, count = None, None, None, 0
        try:
            for frame in container.decode(stream):
                if frame.pts is not None:
                    new_time = frame.pts * stream.time_base - offset
                    gap = new_time - time if time is not None and new_time > time else gap
                    time = new_time
                elif time is None:
                    continue               # the fps filter discards initial frames without a timestamp
                else:
                    time = time + duration  # no timestamp: predicted from the previous frame
                duration = _frame_duration(frame, stream, gap)
                count += 1
                yield DecodedFrame(time, duration, frame)
        except av.FFmpegError as error:
            raise VideoError(f"{path}: decoding failed after {count} frames ({_reason(error)})") from None
    if count == 0:
        raise VideoError(f"{path}: no decodable video frames")


def display_rotation(frame: av.VideoFrame, path='') -> int:
    """Clockwise rotation (0, 90, 180, 270) that the display matrix asks for; other angles are refused."""
    clockwise = (-round(frame.rotation)) % 360
    if clockwise % 90:
        raise VideoError(f"{path}: display rotation of {frame.rotation} degrees is not a multiple of 90")
    return clockwise


def _display_matrix(frame: av.VideoFrame) -> tuple[int, ...] | None:
    for side_data in frame.side_data:
        if side_data.type.name == 'DISPLAYMATRIX':
            return struct.unpack('<9i', bytes(side_data))
    return None


def rotation_filters(frame: av.VideoFrame, path='') -> list[tuple[str, str]]:
    """The filters the ffmpeg command line inserts to show a frame upright (`-autorotate`, on by default:
    fftools/ffmpeg_filter.c): transpose for 90/270 degrees, hflip/vflip for 180, vflip for a mirrored matrix."""
    matrix = _display_matrix(frame)
    if matrix is None:
        return []
    theta = display_rotation(frame, path)
    if theta == 90:
        return [('transpose', 'cclock_flip' if matrix[3] > 0 else 'clock')]
    if theta == 270:
        return [('transpose', 'clock_flip' if matrix[3] < 0 else 'cclock')]
    if theta == 180:
        return [(name, '') for name, index in (('hflip', 0), ('vflip', 4)) if matrix[index] < 0]
    return [('vflip', '')] if matrix[4] < 0 else []


def displayed_size(frame: av.VideoFrame, path='') -> tuple[int, int]:
    """(width, height) of the frame as displayed, after its rotation."""
    if display_rotation(frame, path) in (90, 270):
        return frame.height, frame.width
    return frame.width, frame.height


class FilterChain:
    """An in-process libavfilter chain `buffer -> rotation -> filters -> format -> buffersink`, set up for the
    shape of `first` and set up again when a frame's size or pixel format changes (as the command line
    reconfigures its graph); `__call__(frame)` returns the filtered frame as an (H, W, C) uint8 array."""

    def __init__(self, first: av.VideoFrame, filters: list[tuple[str, str]], pix_fmt: str = 'rgb24', path=''):
        self.filters, self.pix_fmt, self.path = filters, pix_fmt, path
        self.shape, self.graph = None, None
        self._configure(first)

    def _configure(self, frame: av.VideoFrame) -> None:
        self.shape = (frame.width, frame.height, frame.format.name)
        self.graph = av.filter.Graph()
        node = self.graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                                     time_base=frame.time_base or Fraction(1, 1))
        for name, args in rotation_filters(frame, self.path) + self.filters + [('format', self.pix_fmt)]:
            following = self.graph.add(name, args)
            node.link_to(following)
            node = following
        node.link_to(self.graph.add('buffersink'))
        self.graph.configure()

    def filtered(self, frame: av.VideoFrame) -> av.VideoFrame:
        try:
            if (frame.width, frame.height, frame.format.name) != self.shape:
                self._configure(frame)
            self.graph.vpush(frame)
            return self.graph.vpull()
        except av.FFmpegError as error:
            raise VideoError(f"{self.path}: filtering a frame failed ({_reason(error)})") from None

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        return self.filtered(frame).to_ndarray(format=self.pix_fmt)


def probe(path) -> VideoInfo:
    """Duration (the container's, else the decoded end time) and displayed size, from the header and first frame."""
    path = Path(path)
    with open_video(path) as (container, stream):
        try:
            first = next(container.decode(stream))
        except (StopIteration, av.FFmpegError) as error:
            raise VideoError(f"{path}: no decodable video frames "
                             f"({_reason(error) if str(error) else 'empty stream'})") from None
        rate = Fraction(stream.average_rate) if stream.average_rate else None
        duration = container.duration / av.time_base if container.duration else None
        width, height = displayed_size(first, path)
        rotation = display_rotation(first, path)
    if duration is None:
        last = None
        for last in decode(path):
            pass
        duration = float(last.time + last.duration)
    return VideoInfo(path, duration, width, height, rotation, rate)


def sample(path, fps: Fraction, make_converter) -> Iterator[tuple[int, np.ndarray]]:
    """`(slot, converter(frame))` at `fps` with the `fps` filter's rule; a frame repeated over several slots is
    converted once. `make_converter(first_frame, path)` returns the per-frame converter."""
    converter, cache = None, (None, None)
    for slot, decoded in fps_sample(((d.time, d.duration, d) for d in decode(path)), Fraction(fps)):
        if converter is None:
            converter = make_converter(decoded.frame, path)
        if cache[0] is not decoded:
            cache = (decoded, converter(decoded.frame))
        yield slot, cache[1]


def thumbnails(path, count: int, width: int = 160) -> list[tuple[float, bytes]]:
    """About `count` JPEG thumbnails spread over the video (the fps rule at count / duration), `width` pixels
    wide: [(time in seconds, JPEG bytes)]."""
    info = probe(path)
    fps = Fraction(count) / Fraction(max(info.duration, 1e-3)).limit_denominator(10**6)
    height = max(2, round(width * info.height / info.width / 2) * 2)

    def jpeg_converter(first, path):
        chain = FilterChain(first, [('scale', f'{width}:{height}:flags=bicubic')], 'yuvj420p', path)
        return lambda frame: _jpeg(chain.filtered(frame), width, height)

    return [(float(slot / fps), data) for slot, data in sample(path, fps, jpeg_converter)]


def _jpeg(scaled: av.VideoFrame, width: int, height: int) -> bytes:
    encoder = av.CodecContext.create('mjpeg', 'w')
    encoder.width, encoder.height, encoder.pix_fmt = width, height, 'yuvj420p'
    encoder.time_base = Fraction(1, 25)
    return b''.join(bytes(packet) for packet in encoder.encode(scaled) + encoder.encode(None))


# ------------------------------------------------------------------------------- synthetic videos (tests, benchmark)
def moving_shapes(i: int, width: int = 64, height: int = 48) -> np.ndarray:
    """Frame i of the synthetic video: a red top-left quadrant, a white bar moving right, i in the blue channel."""
    img = np.zeros((height, width, 3), np.uint8)
    img[: height // 2, : width // 2, 0] = 220
    img[:, (3 * i) % width: (3 * i) % width + 4] = 255
    img[..., 2] = np.uint8(min(i, 255))
    return img


def write_synthetic_video(path, n_frames=None, rate=Fraction(25), pts_ms=None, rotation=None, width=64, height=48):
    """Write `moving_shapes` frames: `n_frames` at `rate`, or at the hand-set times `pts_ms` (milliseconds:
    variable frame rate, in a container with a millisecond time base such as .mkv); `rotation`: a display matrix
    turning the picture that many degrees counter-clockwise. H.264 (MPEG-4 part 2 when libx264 is absent)."""
    n_frames = len(pts_ms) if pts_ms is not None else n_frames
    codec = 'libx264' if 'libx264' in av.codecs_available else 'mpeg4'
    with av.open(str(path), 'w') as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, 'yuv420p'
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(moving_shapes(i, width, height), format='rgb24')
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return Path(path)
