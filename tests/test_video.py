"""Decoding (utils/video.py): FFmpeg's `fps` rule against libavfilter's own `fps` filter (run by PyAV as an
independent oracle) and against hand computations, variable and fractional frame rates, rotation metadata, short
and corrupt videos. The videos are written by the tests with PyAV (moving shapes, a few seconds)."""
from fractions import Fraction

import av
import numpy as np
import pytest

from utils.video import (FilterChain, VideoError, decode, fps_sample, moving_shapes, probe, round_near_inf, sample,
                         thumbnails, write_synthetic_video as write_video)

def fps_filter_oracle(frames, fps) -> list[int]:
    """libavfilter's `fps=fps` on `(pts, duration, time_base)` gray frames whose pixels hold their index; returns
    the input index shown in each output slot, in order."""
    graph = av.filter.Graph()
    source = graph.add_buffer(width=16, height=16, format='gray', time_base=frames[0][2])
    fps_node, sink = graph.add('fps', f'fps={fps}'), graph.add('buffersink')
    source.link_to(fps_node)
    fps_node.link_to(sink)
    graph.configure()
    shown = []

    def drain():
        while True:
            try:
                shown.append(int(graph.vpull().to_ndarray()[0, 0]))
            except (av.BlockingIOError, av.EOFError):
                return

    for index, (pts, duration, time_base) in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.full((16, 16), index, np.uint8), format='gray')
        frame.pts, frame.duration, frame.time_base = pts, duration, time_base
        graph.vpush(frame)
        drain()
    graph.vpush(None)
    drain()
    return shown


def rule(frames, fps) -> list[int]:
    return [index for _, index in fps_sample(((pts * tb, duration * tb, i) for i, (pts, duration, tb)
                                              in enumerate(frames)), Fraction(fps))]


def test_round_near_inf_rounds_halves_away_from_zero():
    assert [round_near_inf(Fraction(x, 2)) for x in (-3, -1, 1, 3, 5)] == [-2, -1, 1, 2, 3]
    assert round_near_inf(Fraction(149, 100)) == 1 and round_near_inf(Fraction(-149, 100)) == -1


@pytest.mark.parametrize('fps', ['1', '2', '30000/1001', '5/7'])
def test_fps_rule_matches_the_fps_filter_on_constant_fractional_rates(fps):
    ntsc = [(i * 1001, 1001, Fraction(1, 30000)) for i in range(100)]          # 29.97 fps, 3.34 s
    pal = [(i, 1, Fraction(1, 25)) for i in range(63)]                          # 25 fps, 2.52 s
    for frames in (ntsc, pal):
        assert rule(frames, fps) == fps_filter_oracle(frames, fps)


@pytest.mark.parametrize('fps', ['1', '3', '30000/1001'])
def test_fps_rule_matches_the_fps_filter_on_variable_frame_rate(fps):
    rng = np.random.default_rng(0)
    gaps = rng.choice([10, 33, 40, 250, 700, 1500], size=40)                    # milliseconds: bursts and holes
    pts = np.concatenate([[120], 120 + np.cumsum(gaps[:-1])])                  # first frame at 0.12 s
    frames = [(int(p), int(g), Fraction(1, 1000)) for p, g in zip(pts, gaps)]
    assert rule(frames, fps) == fps_filter_oracle(frames, fps)


def test_fps_rule_by_hand_at_one_frame_per_second():
    # 29.97 fps, 100 frames: t_i = i·1001/30000, end 3.337 s → E = round(3.337) = 3 slots (0, 1, 2);
    # slot n shows the last frame with round(t_i) <= n, i.e. t_i < n + 0.5: i < (n + 0.5)·30000/1001
    ntsc = [(i * 1001, 1001, Fraction(1, 30000)) for i in range(100)]
    assert rule(ntsc, 1) == [14, 44, 74]
    # frames at 0.12, 0.9, 2.6 s (durations 0.78, 1.7, 0.2): slots 0..2 from round(0.12) = 0 to round(2.8) = 3;
    # round(0.9) = 1 <= 1 and round(2.6) = 3 > 2 → slot 1 and slot 2 both show frame 1
    vfr = [(120, 780, Fraction(1, 1000)), (900, 1700, Fraction(1, 1000)), (2600, 200, Fraction(1, 1000))]
    assert rule(vfr, 1) == [0, 1, 1]
    # a video starting at 1.6 s: the first slot is round(1.6) = 2
    assert [n for n, _ in fps_sample([(Fraction(16, 10), Fraction(1), 'x')], Fraction(1))] == [2]


def test_videos_shorter_than_a_sampling_step():
    at25 = lambda n: [(i, 1, Fraction(1, 25)) for i in range(n)]               # noqa: E731
    assert rule(at25(12), 1) == [] == fps_filter_oracle(at25(12), 1)           # 0.48 s: round(0.48) = 0 slots
    assert rule(at25(13), 1) == [12] == fps_filter_oracle(at25(13), 1)         # 0.52 s: one slot, t < 0.5 → 12
    assert list(fps_sample([], Fraction(1))) == []


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp('videos')
    return {
        'cfr': write_video(d / 'cfr.mp4', 63, Fraction(25)),                        # 2.52 s
        'ntsc': write_video(d / 'ntsc.mp4', 100, Fraction(30000, 1001)),            # 3.34 s
        'vfr': write_video(d / 'vfr.mkv', pts_ms=[0, 100, 150, 700, 720, 1500, 1600, 2400, 2410, 3000]),
        'rotated': write_video(d / 'rotated.mp4', 10, Fraction(25), rotation=90),
        'short': write_video(d / 'short.mp4', 5, Fraction(25)),
    }


def decoded_oracle(path, fps) -> list[int]:
    frames = [(d.frame.pts, d.frame.duration, d.frame.time_base) for d in decode(path)]
    return fps_filter_oracle(frames, fps)


@pytest.mark.parametrize('name', ['cfr', 'ntsc', 'vfr'])
def test_sampled_frame_counts_follow_the_fps_filter(videos, name):
    for fps in (Fraction(1), Fraction(2), Fraction(30000, 1001)):
        slots = [n for n, _ in sample(videos[name], fps, lambda first, path: lambda frame: frame.pts)]
        assert len(slots) == len(decoded_oracle(videos[name], fps)) and slots == list(range(len(slots)))


def test_decode_keeps_hand_set_timestamps_of_a_variable_frame_rate_video(videos):
    frames = list(decode(videos['vfr']))
    assert [d.time for d in frames] == [Fraction(ms, 1000) for ms in (0, 100, 150, 700, 720, 1500, 1600, 2400,
                                                                      2410, 3000)]
    assert probe(videos['vfr']).duration == pytest.approx(3.0, abs=0.05)
    # 1 fps by hand: slot n shows the last frame with round(t) <= n (round(0.7) = 1, round(1.5) = 2,
    # round(3.0) = 3); the end 3.0 s + the last frame's duration rounds to 3 → slots 0, 1, 2
    shown = [d.time for _, d in fps_sample(((d.time, d.duration, d) for d in frames), Fraction(1))]
    assert shown == [Fraction(150, 1000), Fraction(720, 1000), Fraction(2410, 1000)]


def test_rotation_metadata_is_applied(videos):
    info = probe(videos['rotated'])
    assert (info.width, info.height, info.rotation) == (48, 64, 270)     # 90° counter-clockwise = 270° clockwise
    first = next(iter(decode(videos['rotated']))).frame
    upright = FilterChain(first, [])(first)
    assert upright.shape == (64, 48, 3)
    expected = np.rot90(moving_shapes(0), k=1)                            # the display turns it counter-clockwise
    assert np.abs(upright.astype(int) - expected).mean() < 8              # lossy codec: close, not exact
    assert upright[-8:, :8, 0].mean() > 150 and upright[:8, -8:, 0].mean() < 60   # red quadrant now bottom-left


def test_corrupt_and_missing_files_raise_a_video_error(tmp_path, videos):
    data = videos['cfr'].read_bytes()
    (tmp_path / 'truncated.mp4').write_bytes(data[: len(data) // 2])
    (tmp_path / 'garbage.mp4').write_bytes(b'\x00' * 1000)
    (tmp_path / 'empty.mkv').write_bytes(b'')
    for name in ('truncated.mp4', 'garbage.mp4', 'empty.mkv', 'absent.mp4'):
        with pytest.raises(VideoError, match=name):
            list(decode(tmp_path / name))
        with pytest.raises(VideoError, match=name):
            probe(tmp_path / name)


def test_thumbnails_are_jpegs_spread_over_the_video(videos):
    shots = thumbnails(videos['ntsc'], 4, width=32)
    assert len(shots) == 4 and all(data[:3] == b'\xff\xd8\xff' for _, data in shots)
    times = [t for t, _ in shots]
    assert times == sorted(times) and times[0] == 0.0 and times[-1] < 3.34


def test_filter_chain_follows_a_change_of_frame_size():
    small, large = (av.VideoFrame.from_ndarray(np.full((h, w, 3), 100, np.uint8), format='rgb24')
                    for w, h in ((16, 12), (40, 30)))
    chain = FilterChain(small, [('scale', '8:6:flags=bicubic')])
    assert chain(small).shape == chain(large).shape == (6, 8, 3)
    assert int(chain(large)[3, 4, 0]) == 100
