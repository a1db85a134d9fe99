"""Files that show one video's dense captions: `<vid>.srt`, `<vid>.vtt` (any player, or a browser `<track>`) and
`<vid>.html`, a page viewable offline.

Input: the submission-format result of one video, `[{'sentence': str, 'timestamp': [start, end]}, ...]` in
seconds (evaluation spec §5).
* Cues are sorted by (start, end); overlapping events stay separate, overlapping cues (players stack them).
  Times are clamped to [0, duration] when the duration is known and written to the millisecond
  (SRT `HH:MM:SS,mmm`, WebVTT `HH:MM:SS.mmm`); a reversed pair [end, start] is read in order, and an event that
  would end where it starts lasts one millisecond (both formats need end > start). Whitespace in a sentence
  (line breaks included) becomes single spaces, so a sentence is one cue line; WebVTT text escapes &, <, >.
* The page is one file: inline CSS, the thumbnails (decoded with utils/video.py, JPEG) as data: URIs, no script
  and no network. It shows the thumbnail strip, a timeline with one bar per event placed by time (overlapping
  events on separate lanes) and the numbered captions with their times.
"""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path

from utils.checkpoint import atomic_path
from utils.report import _lanes, _ticks
from utils.video import probe, thumbnails

MIN_CUE = 0.001        # seconds: a zero-length event is shown for one millisecond
CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px 32px;color:#1d2329;
background:#fff;max-width:1240px}h1{font-size:22px;margin:0 0 4px}.muted{color:#66707a}
.strip{display:flex;gap:4px;margin:14px 0 6px}.strip figure{flex:1 1 0;min-width:0;margin:0;text-align:center;
font-size:11.5px;color:#66707a}.strip img{display:block;width:100%;height:auto;border-radius:3px}
.timeline{position:relative;margin:10px 0 4px;border-top:1px solid #cfd5db}
.lane{position:relative;height:22px}.bar{position:absolute;top:3px;height:16px;border-radius:3px;background:#2e9d4f;
color:#fff;font-size:11px;line-height:16px;overflow:hidden;white-space:nowrap;padding-left:3px;box-sizing:border-box;
min-width:2px}.bar:nth-child(even){background:#2f78b7}
.axis{position:relative;height:18px;font-size:11px;color:#66707a}
.axis span{position:absolute;transform:translateX(-50%);white-space:nowrap}
table{border-collapse:collapse;margin:12px 0}td,th{padding:3px 10px;border-bottom:1px solid #e6e9ec;text-align:left;
vertical-align:top}th{background:#f4f6f8;font-weight:600}td.t{white-space:nowrap;color:#4a545e}
"""


class CaptionFormatError(ValueError):
    """An event without a sentence or with timestamps that are not two finite numbers; names the video."""


def cues(events: list[dict], duration: float | None = None, vid: str = '') -> list[tuple[float, float, str]]:
    """(start, end, sentence) of every event, sorted by (start, end), times clamped and ordered (module doc)."""
    out = []
    for index, event in enumerate(events):
        try:
            start, end = sorted(float(t) for t in event['timestamp'])
            sentence = ' '.join(str(event['sentence']).split())
        except (KeyError, TypeError, ValueError):
            raise CaptionFormatError(f"video '{vid}': event {index} is not {{'sentence': str, 'timestamp': "
                                     f"[start, end]}}: {event!r}") from None
        if not (math.isfinite(start) and math.isfinite(end)):
            raise CaptionFormatError(f"video '{vid}': event {index} has a non-finite timestamp {[start, end]}")
        if duration is not None:
            start, end = min(max(start, 0.0), duration), min(max(end, 0.0), duration)
        start = max(start, 0.0)
        out.append((start, max(end, start + MIN_CUE), sentence))
    return sorted(out, key=lambda c: (c[0], c[1]))


def timecode(seconds: float, separator: str) -> str:
    """HH:MM:SS<separator>mmm (milliseconds rounded)."""
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{separator}{ms % 1000:03d}"


def srt_text(cue_list: list[tuple[float, float, str]]) -> str:
    blocks = [f"{i}\n{timecode(s, ',')} --> {timecode(e, ',')}\n{text}\n" for i, (s, e, text) in
              enumerate(cue_list, 1)]
    return '\n'.join(blocks)


def vtt_text(cue_list: list[tuple[float, float, str]]) -> str:
    blocks = [f"{i}\n{timecode(s, '.')} --> {timecode(e, '.')}\n{html.escape(text, quote=False)}\n"
              for i, (s, e, text) in enumerate(cue_list, 1)]
    return 'WEBVTT\n\n' + '\n'.join(blocks)


def _percent(t: float, duration: float) -> float:
    return 100.0 * min(max(t, 0.0), duration) / duration


def _bar(ev: dict, duration: float) -> str:
    left, right = _percent(ev['start'], duration), _percent(ev['end'], duration)
    tip = html.escape(f"{ev['start']:.1f}–{ev['end']:.1f} s: {ev['sentence']}")
    return (f'<div class="bar" data-start="{ev["start"]:.3f}" data-end="{ev["end"]:.3f}" '
            f'style="left:{left:.3f}%;width:{right - left:.3f}%" title="{tip}">{ev["n"]}</div>')


def _timeline(cue_list, duration: float) -> str:
    events = [{'start': s, 'end': e, 'n': i, 'sentence': text} for i, (s, e, text) in enumerate(cue_list, 1)]
    lanes = []
    for lane in _lanes(events):
        lanes.append(f'<div class="lane">{"".join(_bar(ev, duration) for ev in lane)}</div>')
    axis = ''.join(f'<span style="left:{_percent(t, duration):.3f}%">{t:g} s</span>' for t in _ticks(duration))
    return f'<div class="timeline">{"".join(lanes)}</div><div class="axis">{axis}</div>'


def _strip(shots: list[tuple[float, bytes]]) -> str:
    figures = ''.join(f'<figure><img alt="frame at {t:.1f} s" src="data:image/jpeg;base64,'
                      f'{base64.b64encode(data).decode("ascii")}"><figcaption>{t:.1f} s</figcaption></figure>'
                      for t, data in shots)
    return f'<div class="strip">{figures}</div>'


def html_page(vid: str, cue_list, duration: float, shots: list[tuple[float, bytes]]) -> str:
    rows = ''.join(f'<tr><td>{i}</td><td class="t">{timecode(s, ".")} – {timecode(e, ".")}</td>'
                   f'<td>{html.escape(text)}</td></tr>' for i, (s, e, text) in enumerate(cue_list, 1))
    body = (f'<h1>{html.escape(vid)}</h1><div class="muted">{len(cue_list)} events, {duration:.1f} s</div>'
            f'{_strip(shots)}{_timeline(cue_list, max(duration, MIN_CUE))}'
            f'<table><tr><th>#</th><th>time</th><th>caption</th></tr>{rows}</table>')
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(vid)}: dense '
            f'captions</title><style>{CSS}</style></head><body>{body}</body></html>\n')


def _write(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding='utf-8')
    return path


def write_caption_files(vid: str, events: list[dict], out_dir, video=None, duration: float | None = None,
                        n_thumbnails: int = 8) -> dict[str, Path]:
    """Write `<vid>.srt`, `<vid>.vtt` and `<vid>.html` into `out_dir`; `video` (a file) gives the thumbnails and,
    unless `duration` is given, the duration (else the last event's end). Returns {'srt', 'vtt', 'html': path}."""
    if duration is None and video is not None:
        duration = probe(video).duration
    cue_list = cues(events, duration, vid)
    if duration is None:
        duration = max((e for _, e, _ in cue_list), default=0.0)
    shots = thumbnails(video, n_thumbnails) if video is not None and n_thumbnails > 0 else []
    out_dir = Path(out_dir)
    return {'srt': _write(out_dir / f'{vid}.srt', srt_text(cue_list)),
            'vtt': _write(out_dir / f'{vid}.vtt', vtt_text(cue_list)),
            'html': _write(out_dir / f'{vid}.html', html_page(vid, cue_list, duration, shots))}
