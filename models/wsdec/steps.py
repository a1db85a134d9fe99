"""Every WSDEC loss and training step (spec wsdec §4): caption-generator pretraining and supervised captioning
(`caption_step`), the two phases of the cycle training (`cycle_step`: CG phase; `classification_step`: SL phase
with METEOR pseudo-labels), the supervised localizer (`localizer_step`), the parameter groups and the
PyTorch 0.3.1 learning-rate schedule.

Every step function is `step(batch) -> metrics` for utils/engine.py; `metrics['loss']` must stay finite.
"""
import bisect
import time

import torch
import torch.nn.functional as F

from models.wsdec.anchors import anchors
from models.wsdec.caption_generator import caption_loss
from models.wsdec.config import CYCLE_NOISE, MOMENTUM, RECONSTRUCTION_WEIGHT, WEIGHT_DECAY
from utils.segments import cw2se, se2cw, segment_iou
from utils.text import remove_nonascii

PHASE_ID = {'cg': 0, 'sl': 1}           # the 'phase' scalar of the logs
WHOLE_VIDEO = (0.5, 1.0)                # spec §4.1: (s, e) = (0, 1) for every pretraining sample


# ----------------------------------------------------------------------------------- schedule, SGD
def lr_at_epoch(base: float, milestones, epoch: int, gamma: float = 0.1) -> float:
    """lr of 0-based `epoch` under PyTorch 0.3.1's `MultiStepLR` stepped at each epoch start (spec §4, §9):
    `base · gamma^{bisect_right(milestones, epoch)}`."""
    return base * gamma ** bisect.bisect_right(sorted(milestones), epoch)


def epoch_schedule(optimizer, milestones, gamma: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """The 0.3.1 schedule as a scheduler stepped after every epoch: epoch e trains at
    `initial_lr · gamma^{bisect_right(milestones, e)}` (= `lr_at_epoch`), in every parameter group."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_at_epoch(1.0, milestones, epoch, gamma))


def phase_at_epoch(epoch: int, alter_step: int = 5) -> str:
    """'sl' (METEOR-labelled classification) if `epoch % alter_step == 0`, else 'cg' (cycle) (spec §4.2)."""
    return 'sl' if epoch % alter_step == 0 else 'cg'


def sgd(groups, lr: float) -> torch.optim.SGD:
    """SGD(momentum 0.8, weight decay 1e-4) (spec §4)."""
    return torch.optim.SGD(groups, lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)


def cycle_parameter_groups(sl, cg, lr: float) -> list[dict]:
    """`optimizer_cg` of train_final (spec §3.3 `get_parameter_group_c`, §4.2): SL refiner @lr, the rest of
    the SL (encoders, embedding, mixer, predictor) @lr/10, the whole CG @lr."""
    refiner = set(id(p) for p in sl.refiner.parameters())
    return [{'name': 'sl_refiner', 'params': list(sl.refiner.parameters()), 'lr': lr},
            {'name': 'sl_rest', 'params': [p for p in sl.parameters() if id(p) not in refiner], 'lr': lr / 10},
            {'name': 'cg', 'params': list(cg.parameters()), 'lr': lr}]


# --------------------------------------------------------------------------------------- segments
def whole_video(batch) -> torch.Tensor:
    """The pretraining segment (c, w) = (0.5, 1.0) for every sentence row (spec §4.1)."""
    return torch.tensor(WHOLE_VIDEO, device=batch.video.device).expand(batch.caption.size(0), 2)


def caption_order_split(batch) -> torch.Tensor:
    """`--pretrain-segment caption-order` (a fix flag of issue 14, not in the original): sentence j of a video's n
    sentences is paired with the j-th of n equal parts of the video, (c, w) = ((j + 0.5) / n, 1 / n). It uses only
    what weak supervision gives (the captions, their number and their order in the annotation, which is start-time
    order for 97.6 % of ActivityNet's training videos) and no event time. A captioner pretrained on the whole
    video never sees two segments of one video, so it gives every anchor the same caption (README "Why WSDEC
    falls back to one segment"); this one learns that the segment changes the caption."""
    j, n = batch.sentence_position.unbind(1)
    return torch.stack([(j + 0.5) / n, 1.0 / n], dim=1)


PRETRAIN_SEGMENTS = {'whole-video': whole_video, 'caption-order': caption_order_split}


def gt_segments(batch) -> torch.Tensor:
    """GT segments as normalised `(c, w)`: `se2cw([s_idx, e_idx]) / L` in feature-index units (spec §4.3)."""
    length = batch.video_length[:, 0].index_select(0, batch.caption_gather_idx)
    return se2cw(batch.timestamp_idx) / length.unsqueeze(1)


def localizer_inputs(batch, sent=None):
    """Arguments of a localizer's forward for the batch's sentences (or `sent` with their lengths/masks)."""
    return (batch.video, batch.video_length, batch.video_mask, batch.caption if sent is None else sent,
            batch.caption_length, batch.caption_mask, batch.caption_gather_idx)


def segment_seconds(cw, batch):
    duration = batch.video_length[:, 1].index_select(0, batch.caption_gather_idx)
    return cw2se(cw.detach(), clip=True) * duration.unsqueeze(1)


def training_miou(segment_seconds_, batch) -> float:
    """Mean IoU of the predicted segments (seconds) with the GT ones: logged only, never in a loss."""
    return float(segment_iou(segment_seconds_.detach(), batch.raw_timestamp).mean())


# --------------------------------------------------------------------------------------- the steps
def _update(optimizer, loss, set_to_none, clip=None):
    optimizer.zero_grad(set_to_none=set_to_none)
    loss.backward()
    if clip is not None:
        params, max_norm = clip
        torch.nn.utils.clip_grad_norm_(params, max_norm)
    optimizer.step()


def caption_step(cg, optimizer, segment_of, *, set_to_none=False):
    """Pretraining (`segment_of = whole_video`) and supervised captioning (`gt_segments`): teacher-forced L_cap
    (summed over tokens / sentences, spec §3.2.7), SGD over the CG, no clipping (spec §4.1, §4.3)."""
    def step(batch):
        cg.train()
        logp, _ = cg(batch.video, batch.video_length, batch.video_mask, segment_of(batch), batch.caption_gather_idx,
                     sent=batch.caption)
        loss = caption_loss(logp, batch.caption, batch.caption_mask)
        _update(optimizer, loss, set_to_none)
        return {'loss': loss.detach()}
    return step


def cycle_step(cg, sl, batch, optimizer, *, grad_clip, set_to_none=False) -> dict:
    """One CG-phase iteration (spec §4.2 "CG phase"), both models in train mode:
    S = l_diff(V, C) + ε; logp, Ĉ = g(V, S, C); S' = l_diff(V, Ĉ) with C's length and mask;
    L = L_cap + mean((S' − sg(S))²)/100; clip the localizer's gradients only; step."""
    cg.train()
    sl.train()
    # both localizer calls encode the same videos: done together (LocalizerBackbone.encode_video_twice)
    first_encoding, second_encoding = sl.encode_video_twice(batch.video, batch.video_length)
    segment = sl(*localizer_inputs(batch), mode='diff', video_encoding=first_encoding)
    segment = segment + (torch.rand_like(segment) * 2 - 1) * CYCLE_NOISE
    logp, generated = cg(batch.video, batch.video_length, batch.video_mask, segment, batch.caption_gather_idx,
                         sent=batch.caption)
    reconstructed = sl(*localizer_inputs(batch, generated.detach()), mode='diff', video_encoding=second_encoding)
    loss_cap = caption_loss(logp, batch.caption, batch.caption_mask)
    loss_rec = ((reconstructed - segment.detach()) ** 2).mean() * RECONSTRUCTION_WEIGHT
    loss = loss_cap + loss_rec
    _update(optimizer, loss, set_to_none, None if grad_clip is None else (sl.parameters(), grad_clip))
    return {'loss': loss.detach(), 'loss_cap': loss_cap.detach(), 'loss_rec': loss_rec.detach(),
            'miou': training_miou(segment_seconds(segment, batch), batch)}


@torch.no_grad()
def anchor_captions(cg, batch, anchor_cw) -> torch.Tensor:
    """Beam-search captions of every anchor for every sentence row: tokens `(N, A, max_len + 2)`."""
    n, a = batch.caption.size(0), anchor_cw.size(0)
    segments = anchor_cw.to(batch.video.device).repeat(n, 1)
    gather = batch.caption_gather_idx.repeat_interleave(a)
    tokens, _, _ = cg(batch.video, batch.video_length, batch.video_mask, segments, gather)
    return tokens.view(n, a, -1)


def first_argmax(rows) -> list[int]:
    """Index of the first maximum of each row (np.argmax's tie-break, spec §4.2, §6.3.7)."""
    return [max(range(len(row)), key=lambda k: (row[k], -k)) for row in rows]


TIE_RULES = ('first', 'random', 'skip')


def tied(row) -> bool:
    """Several anchors share the row's best METEOR (e.g. the captioner gave them the same caption)."""
    return sum(v == max(row) for v in row) > 1


def break_ties(rows, labels, rule: str, generator: torch.Generator | None = None):
    """The labels under a tie rule, and the rows that enter the loss (issue 14): 'first' keeps the first maximum
    (the released rule, spec §6.3.7: every tie becomes anchor 0 when the anchors share one caption); 'random' draws
    one of the maxima uniformly (the authors' initial commit); 'skip' leaves tied rows out of the loss."""
    if rule == 'first':
        return labels, [True] * len(rows)
    if rule == 'skip':
        return labels, [not tied(row) for row in rows]
    out = []
    for row in rows:
        best = [k for k, v in enumerate(row) if v == max(row)]
        out.append(best[int(torch.randint(len(best), (1,), generator=generator))])
    return out, [True] * len(rows)


def pseudo_labels(cg, batch, vocab, scorer, anchor_cw=None) -> tuple[torch.Tensor, list]:
    """METEOR pseudo-labels (spec §4.2 SL phase step 2): caption the anchors with the frozen CG (eval mode,
    beam search), score every caption against the row's GT sentence, label = first argmax.

    `scorer(hyps, refs) -> list[float]` gets all N·A pairs at once; strings are rtranslated then
    stripped of non-ASCII characters. Returns the labels `(N,)` and the score rows.
    """
    anchor_cw = anchors() if anchor_cw is None else anchor_cw
    cg.eval()
    tokens = anchor_captions(cg, batch, anchor_cw).cpu()
    n, a = tokens.shape[:2]
    hyps = [remove_nonascii(vocab.decode(t)) for t in tokens.view(n * a, -1)]
    refs = [remove_nonascii(vocab.decode(c)) for c in batch.caption.cpu()]
    scores = scorer(hyps, [[refs[i // a]] for i in range(n * a)])
    rows = [list(map(float, scores[i * a:(i + 1) * a])) for i in range(n)]
    return torch.tensor(first_argmax(rows), device=batch.video.device), rows


def classification_step(sl, cg, batch, optimizer, vocab, scorer, *, set_to_none=False, ties='first') -> dict:
    """One SL-phase iteration (spec §4.2 "SL phase"): SL in train mode, CG frozen in eval mode;
    L = CE(score, METEOR pseudo-label); all SL parameters with gradients are updated; no clipping. `ties`:
    `break_ties` (default the released first-index rule; 'random' draws from the global generator, which
    checkpoints keep)."""
    sl.train()
    score, _, seconds = sl(*localizer_inputs(batch), mode='forward')
    labels, rows = pseudo_labels(cg, batch, vocab, scorer)
    chosen, used = break_ties(rows, labels.tolist(), ties)
    labels = torch.tensor(chosen, device=score.device)
    used = torch.tensor(used, device=score.device)
    loss = F.cross_entropy(score[used], labels[used]) if bool(used.any()) else score.sum() * 0
    _update(optimizer, loss, set_to_none)
    # collapse diagnostics (issue 14): labels decided by a tie (several anchors share the best METEOR, e.g. the
    # same caption for every anchor), and labels that are anchor 0 (where every tie goes by the released rule)
    return {'loss': loss.detach(), 'miou': training_miou(seconds, batch),
            'label_mean': float(labels.float().mean()), 'label_tied': sum(map(tied, rows)) / len(rows),
            'label_zero': float((labels == 0).float().mean())}


def localizer_step(sl, optimizer, lambda_, *, set_to_none=False):
    """Supervised localizer (spec §3.3 `build_loss`, §4.3): CE on the best-IoU anchor + λ·L1 of its refinement,
    GT segments normalised from their feature indices (index / L)."""
    def step(batch):
        sl.train()
        score, refine, seconds = sl(*localizer_inputs(batch), mode='forward')
        length = batch.video_length[:, 0].index_select(0, batch.caption_gather_idx)
        loss = sl.build_loss(score, refine, batch.timestamp_idx / length.unsqueeze(1), lambda_)
        _update(optimizer, loss, set_to_none)
        return {'loss': loss.detach(), 'miou': training_miou(seconds, batch)}
    return step


class MeteorPseudoLabelScorer:
    """`scorer` of `pseudo_labels`: coco-caption's PTB tokenizer then METEOR 1.5 through one persistent Java
    process (spec §4.2, §6.5), started on first use (METEOR loads its tables once, ~30 s).

    Each line is tokenized on its own (`ptb_tokenize`), so tokenized strings are cached and the tokenizer
    JVM only runs for batches holding unseen sentences (one call for all of them).
    """

    def __init__(self):
        self._meteor = None
        self._tokenized = {}
        self.seconds = 0.0

    def tokenize(self, texts):
        from third_party.densevid_eval.meteor import ptb_tokenize
        unseen = sorted(set(texts) - self._tokenized.keys())
        if unseen:
            self._tokenized.update(zip(unseen, ptb_tokenize(unseen)))
        return [self._tokenized[t] for t in texts]

    def __call__(self, hyps, refs):
        from third_party.densevid_eval.meteor import Meteor
        start = time.perf_counter()
        if self._meteor is None:
            self._meteor = Meteor()
        flat = self.tokenize(list(hyps) + [r for rs in refs for r in rs])
        rest = iter(flat[len(hyps):])
        scores = self._meteor.score_pairs(flat[:len(hyps)], [[next(rest) for _ in rs] for rs in refs])
        self.seconds += time.perf_counter() - start
        return scores

    def close(self):
        if self._meteor is not None:
            self._meteor.close()
            self._meteor = None
