"""Subtitles and the offline page of one video's captions (utils/caption_outputs.py): SRT / WebVTT cue syntax
and timing, ordering, overlaps, clamping; the page is self-contained, places bars by time and renders in
headless Chromium (skipped when absent, as tests/test_report.py)."""
import base64
import re
import subprocess
from fractions import Fraction

import pytest

from tests.test_report import _chromium
from utils.caption_outputs import CaptionFormatError, cues, srt_text, timecode, vtt_text, write_caption_files
from utils.video import write_synthetic_video as write_video

EVENTS = [{'sentence': 'He lifts  a weight\nagain.', 'timestamp': [30.0, 61.25]},
          {'sentence': 'A man walks in & <smiles>.', 'timestamp': [0.0, 20.0004]},
          {'sentence': 'He drops it.', 'timestamp': [50.5, 3725.0]}]       # overlaps the first; past 1 h
SRT_CUE = re.compile(r'^(\d+)\n(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})\n([^\n]+)\n$')
VTT_CUE = re.compile(r'^(\d+)\n(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})\n([^\n]+)\n$')


def _seconds(h, m, s, ms):
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse(text: str, pattern) -> list[tuple[int, float, float, str]]:
    """Cues of an SRT/VTT text; every block must match the cue syntax exactly."""
    blocks = [b + '\n' for b in text.rstrip('\n').split('\n\n')]
    out = []
    for block in blocks:
        m = pattern.match(block)
        assert m, f'not a cue: {block!r}'
        g = m.groups()
        out.append((int(g[0]), _seconds(*g[1:5]), _seconds(*g[5:9]), g[9]))
    return out


def test_timecodes():
    assert timecode(0, ',') == '00:00:00,000' and timecode(3725.0, '.') == '01:02:05.000'
    assert timecode(20.0004, ',') == '00:00:20,000' and timecode(61.2506, '.') == '00:01:01.251'


def test_srt_cues_are_sorted_numbered_and_overlapping():
    got = parse(srt_text(cues(EVENTS)), SRT_CUE)
    assert [(n, s, e) for n, s, e, _ in got] == [(1, 0.0, 20.0), (2, 30.0, 61.25), (3, 50.5, 3725.0)]
    assert got[0][3] == 'A man walks in & <smiles>.' and got[1][3] == 'He lifts a weight again.'
    assert got[2][1] < got[1][2]                                            # overlap kept


def test_vtt_has_the_header_and_escapes_text():
    text = vtt_text(cues(EVENTS))
    assert text.startswith('WEBVTT\n\n')
    got = parse(text[len('WEBVTT\n\n'):], VTT_CUE)
    assert [(s, e) for _, s, e, _ in got] == [(0.0, 20.0), (30.0, 61.25), (50.5, 3725.0)]
    assert got[0][3] == 'A man walks in &amp; &lt;smiles&gt;.'
    assert '-->' not in ''.join(t for *_, t in got)


def test_times_are_clamped_ordered_and_positive_length():
    clamped = cues([{'sentence': 'a', 'timestamp': [-3, 12]}, {'sentence': 'b', 'timestamp': [9, 4]},
                    {'sentence': 'c', 'timestamp': [7, 7]}], duration=10.0)
    assert clamped == [(0.0, 10.0, 'a'), (4.0, 9.0, 'b'), (7.0, 7.001, 'c')]
    for bad in ({'sentence': 'x'}, {'sentence': 'x', 'timestamp': [1]}, {'sentence': 'x', 'timestamp': ['a', 2]},
                {'sentence': 'x', 'timestamp': [0, float('nan')]}):
        with pytest.raises(CaptionFormatError, match="video 'v1'"):
            cues([bad], vid='v1')


@pytest.fixture(scope='module')
def page(tmp_path_factory):
    d = tmp_path_factory.mktemp('captions')
    video = write_video(d / 'v_demo.mp4', 100, Fraction(25))                   # 4 s
    events = [{'sentence': 'A bar moves right.', 'timestamp': [0.0, 2.0]},
              {'sentence': 'It keeps moving <fast>.', 'timestamp': [1.0, 4.0]},
              {'sentence': 'The end.', 'timestamp': [3.0, 4.0]}]
    paths = write_caption_files('v_demo', events, d / 'out', video=video, n_thumbnails=4)
    return paths, paths['html'].read_text()


def test_all_three_files_are_written(page):
    paths, _ = page
    assert sorted(paths) == ['html', 'srt', 'vtt'] and all(p.name.startswith('v_demo.') for p in paths.values())
    assert len(parse(paths['srt'].read_text(), SRT_CUE)) == 3


def test_page_is_self_contained(page):
    _, text = page
    assert text.startswith('<!DOCTYPE html>') and '<style>' in text and '<script' not in text
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', text, re.I)
    assert '<link' not in text and '@import' not in text and 'url(' not in text
    images = re.findall(r'<img alt="frame at [\d.]+ s" src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)">', text)
    assert len(images) == 4 and all(base64.b64decode(i)[:3] == b'\xff\xd8\xff' for i in images)
    assert text.count('<img') == 4
    assert 'It keeps moving &lt;fast&gt;.' in text


def test_timeline_bars_are_placed_by_time(page):
    _, text = page
    bars = re.findall(r'<div class="bar" data-start="([\d.]+)" data-end="([\d.]+)" '
                      r'style="left:([\d.]+)%;width:([\d.]+)%"', text)
    assert len(bars) == 3
    for start, end, left, width in bars:                                     # duration 4 s
        assert float(left) == pytest.approx(100 * float(start) / 4, abs=1e-3)
        assert float(width) == pytest.approx(100 * (float(end) - float(start)) / 4, abs=1e-3)
    assert text.count('<div class="lane">') == 2                            # [0, 2] and [3, 4] share a lane


@pytest.mark.skipif(_chromium() is None, reason='chromium not installed')
def test_page_renders_in_headless_chromium(page, tmp_path):
    paths, _ = page
    shot = tmp_path / 'shot.png'
    subprocess.run([_chromium(), '--headless', '--no-sandbox', '--disable-gpu', f'--screenshot={shot}',
                    '--window-size=1280,720', paths['html'].as_uri()], capture_output=True, timeout=60, check=False)
    assert shot.exists() and shot.stat().st_size > 20_000                  # a blank page is ~10 kB
    assert shot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
