"""Dense captions of new video files with a trained checkpoint (scripts/caption_video.py; issue 18 item 5).

    report = caption_videos(['talk.mp4'], 'runs/wsdec_final/checkpoints/last.pt', 'captions/', device='auto')

checkpoint → the features its model reads (WSDEC: C3D, ILCACM: CLIP; the width is the checkpoint's and must be
the extractor's) → extraction into a data root under the output folder (`OUT/features/c3d.hdf5`,
`OUT/features/clip/<vid>.npy`: models/extractors/pipeline.py `extract`, decoding in worker threads; a rerun skips the
videos already there, so features are cached by video id: delete `OUT/features/` after changing a video file or the
weights) → the method's own test procedure, read from that data root by the stores every evaluation reads
(utils/features.py) → `OUT/<vid>.json` (the submission format) and `OUT/<vid>.srt`, `.vtt`, `.html`
(utils/caption_outputs.py `write_caption_files`).

Each video is captioned alone, as a one-video dataset built from an annotation `{vid: {duration, timestamps,
sentences}}` whose duration is the video's (utils/video.py `probe`), so its captions do not depend on the other
videos of the command:
* WSDEC dense kinds (wsdec_final, wsdec_noregress, wsdec_noclass): models/wsdec/inference.py `dense_captioning`
  (spec wsdec §4.4) with the checkpoint's inference options (n_rand, rand_seed, refine_round, iou_thres, drop
  rule; its localizer's anchors for n_rand -1) on C3D rows `[::video_sample_rate]` (the checkpoint's, 2 as
  released). The video is a batch of its own: its initial segments are the first draw of the seeded generator
  (the evaluation draws once per batch of val videos, shared by the batch). `legacy_shuffled_eval` (a val-loader
  option) does not apply. WSDECDataset needs a sentence: a placeholder '' over the whole video, which dense
  captioning never reads.
* wsdec_cg_pretrain: the random-segment baseline `pretrain_random_captions` (spec wsdec §4.4 end): one
  `(c, w) ~ U[0, 1)²` from a generator seeded with `rand_seed`, one caption. The `gt_*` fields it adds come from
  the placeholder and are not written.
* ilcacm: models/ilcacm/inference.py `generate_paragraphs` (the stage-1 paragraph fixes the event count, spec
  ilcacm §5.1) and `predict` (masks, one caption per mask, §5.2), on the CLIP rows resampled to the checkpoint's
  `max_frames` (32 for ActivityNet) by ILCACMDataset, with the checkpoint's count mode, beams and caption cap. A
  video has no sentences (ILCACMDataset's empty list); count mode 'oracle' needs them, so 'paragraph' replaces it
  (said on stdout and in the JSON).
* wsdec_cg (ground-truth segments), wsdec_sl (ground-truth sentences) and the two-stage baseline (two
  checkpoints) need annotations: refused with one line.

A video that cannot be decoded, or whose cached features are unusable, is recorded in `CaptionReport.failed` and
the others go on.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from models.ilcacm.factory import model_from_checkpoint
from models.ilcacm.inference import generate_paragraphs, predict as ilcacm_predict
from models.wsdec.config import resolve_options
from models.wsdec.evaluation import DENSE_KINDS, eval_models, sl_anchors
from models.wsdec.inference import dense_captioning, predict, pretrain_random_captions
from models.wsdec.runs import checkpoint_vocab, video_sample_rate
from utils.caption_outputs import CaptionFormatError, write_caption_files
from utils.checkpoint import atomic_path
from models.extractors.pipeline import REQUIRED_WEIGHTS, build_extractor, extract, feature_store, list_videos, \
    video_id, weight_path
from utils.features import FeatureError, open_features
from utils.ilcacm_data import ILCACMDataset
from utils.paths import check_video_ids
from utils.run import data_paths, read_checkpoint, resolve_device
from utils.video import VideoError, probe
from utils.wsdec_data import WSDECDataset, wsdec_collate

WSDEC_KINDS = DENSE_KINDS + ('wsdec_cg_pretrain',)
KINDS = WSDEC_KINDS + ('ilcacm',)
NEEDS_ANNOTATIONS = {'wsdec_cg': 'captions ground-truth segments', 'wsdec_sl': 'localizes ground-truth sentences'}
OUTPUTS = ('.json', '.srt', '.vtt', '.html')
PER_VIDEO_ERRORS = (VideoError, FeatureError, CaptionFormatError)   # the batch goes on after these


class CaptioningSetupError(ValueError):
    """A checkpoint that cannot caption new videos, or an extractor that does not give the features it reads."""


@dataclass(frozen=True)
class Captioner:
    """What `caption_videos` needs of a checkpoint."""
    kind: str
    feature: str            # 'c3d' (WSDEC) or 'clip' (ILCACM): the extractor and the store
    feature_dim: int        # the width the model was trained on
    sample_rate: int        # C3D rows the store keeps: [::video_sample_rate] (CLIP stores keep every row)
    caption: Callable       # (vid, duration, store) -> (events [{'sentence', 'timestamp'}], details for the JSON)
    params: dict            # the inference options, written in the JSON


@dataclass
class CaptionReport:
    written: dict[str, dict[str, Path]] = field(default_factory=dict)   # vid -> {'json', 'srt', 'vtt', 'html'}
    failed: dict[str, str] = field(default_factory=dict)                # vid -> one-line reason
    extraction: object = None                                           # the ExtractionReport

    def summary(self) -> str:
        head = f"{len(self.written)} videos captioned, {len(self.failed)} failed"
        return '\n'.join([head] + [f"  failed {vid}: {reason}" for vid, reason in self.failed.items()])


# ------------------------------------------------------------------------------------------------ checkpoints
def _one_width(state, path, parts) -> int:
    widths = {state['config']['models'][part]['video_feature_dim'] for part in parts}
    if len(widths) != 1:
        raise CaptioningSetupError(f"{path}: the models {parts} read features of different widths {sorted(widths)}")
    return widths.pop()


def wsdec_captioner(state, path, device, vocab_flag=None) -> Captioner:
    """A WSDEC dense-captioning or pretrained-CG checkpoint as a Captioner (module docstring)."""
    kind = state['kind']
    parts = ('cg',) if kind == 'wsdec_cg_pretrain' else ('cg', 'sl')
    models = eval_models(state, path, parts, device)
    vocab = checkpoint_vocab(state, path, vocab_flag)
    options, _ = resolve_options(state['config'].get('inference'), {})
    anchor_list = sl_anchors(state)

    def run(batches):
        if kind == 'wsdec_cg_pretrain':
            generator = torch.Generator().manual_seed(options.rand_seed)
            return predict(batches, lambda batch: pretrain_random_captions(models[0], batch, generator, vocab),
                           device)
        return dense_captioning(*models, batches, options, vocab, device, anchor_list=anchor_list)

    def caption(vid, duration, store):
        placeholder = {vid: {'duration': duration, 'timestamps': [[0.0, duration]], 'sentences': ['']}}
        dataset = WSDECDataset(placeholder, store, vocab, vids=[vid])
        results = run([wsdec_collate([dataset[0]])])
        return [{'sentence': e['sentence'], 'timestamp': e['timestamp']} for e in results.get(vid, [])], {}

    if kind == 'wsdec_cg_pretrain':
        params = {'rand_seed': options.rand_seed, 'segments': 'one random per video'}
    else:
        params = {k: v for k, v in asdict(options).items() if k != 'legacy_shuffled_eval'}
    rate = video_sample_rate(state['config'])
    return Captioner(kind, 'c3d', _one_width(state, path, parts), rate, caption, {**params, 'video_sample_rate': rate})


def ilcacm_captioner(state, path, device) -> Captioner:
    """An ILCACM checkpoint as a Captioner (module docstring)."""
    config = argparse.Namespace(**state['config'])
    if config.count_mode == 'oracle':
        print(f"{path}: count mode 'oracle' needs ground-truth sentences; a new video uses 'paragraph' "
              f"(the stage-1 paragraph's sentences, spec ilcacm §5.1)")
        config.count_mode = 'paragraph'
    model, tokenizer = model_from_checkpoint(state)
    model.to(device)

    def caption(vid, duration, store):
        dataset = ILCACMDataset({vid: {'duration': duration, 'sentences': []}}, store, tokenizer, [vid],
                                config.max_frames, config.max_captions, config.max_tokens)
        paragraphs = generate_paragraphs(model, dataset, device, config)
        events = ilcacm_predict(model, dataset, paragraphs, device, config)[vid]
        return events, {'paragraph': paragraphs[vid]['paragraph']}

    params = {name: getattr(config, name) for name in ('count_mode', 'num_beams', 'max_captions', 'max_frames')}
    return Captioner('ilcacm', 'clip', state['feature_dim'], 1, caption, {**params, 'mask_mode': model.mask_mode})


def load_captioner(path, device='auto', vocab=None) -> Captioner:
    """The Captioner of a checkpoint of this suite (converted original ones included; WSDEC's without a stored
    vocabulary need `vocab`); kinds that need annotations are refused."""
    state = read_checkpoint(path)
    kind = state['kind']
    if kind in NEEDS_ANNOTATIONS:
        raise CaptioningSetupError(f"{path}: a '{kind}' checkpoint {NEEDS_ANNOTATIONS[kind]}, which a new video "
                                   f"does not have; caption videos with one of: {', '.join(KINDS)}")
    if kind not in KINDS:
        raise CaptioningSetupError(f"{path}: unknown checkpoint kind {kind!r}; expected one of: {', '.join(KINDS)}")
    device = resolve_device(device)
    if kind == 'ilcacm':
        return ilcacm_captioner(state, path, device)
    return wsdec_captioner(state, path, device, vocab)


def check_extractor_width(captioner: Captioner, extractor, checkpoint, weights: dict) -> None:
    """The extractor must give the features the checkpoint's model was trained on (their width)."""
    if extractor.dim != captioner.feature_dim:
        files = ', '.join(str(weight_path(name, weights.get(name))) for name in REQUIRED_WEIGHTS[captioner.feature])
        raise CaptioningSetupError(f"{checkpoint}: the '{captioner.kind}' model reads {captioner.feature_dim}-d "
                                   f"{captioner.feature} features, but the extractor built from {files} gives "
                                   f"{extractor.dim}-d ones; pass the weights its features were made with")


# --------------------------------------------------------------------------------------------------- videos
def check_cached_width(captioner: Captioner, store, vid: str) -> None:
    """Features extracted by an earlier run (other weights) must still have the checkpoint's width."""
    width = store.header(vid)[0][-1]
    if width != captioner.feature_dim:
        raise FeatureError(f"{store.source(vid)}: video '{vid}': {width}-d features from an earlier run, the "
                           f"checkpoint reads {captioner.feature_dim}-d: use another --out or delete them")


def submission(vid: str, events: list, captioner: Captioner, params: dict) -> dict:
    """The densevid_eval submission of one video (spec evaluation §3.1), with how it was made in `params`."""
    return {'version': 'VERSION 1.0', 'results': {vid: events},
            'external_data': {'used': True, 'details': f"{captioner.feature} features extracted from the video "
                                                       f"by scripts/caption_video.py"},
            'params': {'kind': captioner.kind, **captioner.params, **params}}


def caption_video(captioner: Captioner, path: Path, store, out_dir: Path, checkpoint) -> dict[str, Path]:
    """Caption one extracted video; write `<vid>.json` and the files of `write_caption_files`."""
    vid = video_id(path)
    check_cached_width(captioner, store, vid)
    duration = probe(path).duration
    events, details = captioner.caption(vid, duration, store)
    params = {'checkpoint': str(checkpoint), 'video': str(path), 'duration': duration, **details}
    with atomic_path(out_dir / f'{vid}.json') as tmp:
        tmp.write_text(json.dumps(submission(vid, events, captioner, params), indent=1) + '\n')
    files = {'json': out_dir / f'{vid}.json', **write_caption_files(vid, events, out_dir, video=path,
                                                                    duration=duration)}
    print(f"{vid}: {len(events)} events -> " + ', '.join(str(p) for p in files.values()))
    return files


def caption_videos(inputs, checkpoint, out_dir, vocab=None, workers=2, progress=True, **options) -> CaptionReport:
    """scripts/caption_video.py: every video of `inputs` (files or folders) captioned with `checkpoint` into
    `out_dir`; `options` are `build_extractor`'s (device, dtype, weight paths)."""
    videos = list_videos(inputs)
    for path in videos:       # the id names the output files: a safe file name (utils/paths.py)
        check_video_ids([video_id(path)], str(path), suffix=max(OUTPUTS, key=len))
    captioner = load_captioner(checkpoint, options.get('device', 'auto'), vocab)
    extractor = build_extractor(captioner.feature, **options)
    check_extractor_width(captioner, extractor, checkpoint, options)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = data_paths(str(out_dir))
    cache = paths.c3d if captioner.feature == 'c3d' else paths.clip_dir
    report = CaptionReport(extraction=extract(videos, extractor, feature_store(captioner.feature, out_dir),
                                              workers=workers, progress=progress))
    done = report.extraction
    print(f"{captioner.feature} features in {cache}: {len(done.written)} extracted, {len(done.skipped)} from an "
          f"earlier run, {len(done.failed)} failed")
    report.failed.update(done.failed)
    del extractor
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    todo = [path for path in videos if video_id(path) not in report.failed]
    store = open_features(cache, captioner.sample_rate) if todo else None
    for path in todo:
        vid = video_id(path)
        try:
            report.written[vid] = caption_video(captioner, path, store, out_dir, checkpoint)
        except PER_VIDEO_ERRORS as error:
            report.failed[vid] = str(error)
    return report
