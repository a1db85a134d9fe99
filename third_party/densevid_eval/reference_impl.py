"""The official per-video loop of densevid_eval, mirrored step by step (spec evaluation §3.3, §3.4).

``ANETcaptions.evaluate_tiou`` / ``evaluate_detection`` of densevid_eval (``deba7d7``; ``9d4045a`` for the
random garbage; ILCACM's copy for ``missing='skip'``) in Python 3, with pycocoevalcap's own ``PTBTokenizer``
(one Java call per scorer and tIoU, predictions and references separately) and ``Meteor`` (one process,
one synchronous round trip per item, one ``compute_score`` per video). It is slow on purpose: the benchmark
and the tests compare ``dense.score_dense`` with it. The one difference from the official loop: ``vids`` come
in the reference files' order, where the official iterates a ``set`` (``dense.gt_video_ids``).
"""
import numpy as np
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from .dense import average_over_videos
from .meteor import java_executable
from .text import remove_nonascii
from .tiou import tiou


class OfficialLoop:
    """``ANETcaptions`` with every metric on (``-v``); ``vids`` are the videos the protocol scores."""

    def __init__(self, predictions, references, vids, garbage):
        java_executable()
        self.prediction = predictions
        self.ground_truths = references
        self.vids = vids
        self.garbage = garbage
        self.tokenizer = PTBTokenizer()
        self.scorers = [(Bleu(4), ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"]), (Meteor(), "METEOR"),
                        (Rouge(), "ROUGE_L"), (Cider(), "CIDEr")]

    def evaluate_tiou(self, tiou_threshold):
        unique_index = 0
        vid2capid, cur_res, cur_gts = {}, {}, {}
        for vid_id in self.vids:
            vid2capid[vid_id] = []
            if vid_id not in self.prediction:
                continue
            for pred in self.prediction[vid_id]:
                has_added = False
                for gt in self.ground_truths:
                    if vid_id not in gt:
                        continue
                    gt_captions = gt[vid_id]
                    for caption_idx, caption_timestamp in enumerate(gt_captions['timestamps']):
                        if tiou(pred['timestamp'], caption_timestamp) >= tiou_threshold:
                            cur_res[unique_index] = [{'caption': remove_nonascii(pred['sentence'])}]
                            gt_sentence = gt_captions['sentences'][caption_idx]
                            cur_gts[unique_index] = [{'caption': remove_nonascii(gt_sentence)}]
                            vid2capid[vid_id].append(unique_index)
                            unique_index += 1
                            has_added = True
                if not has_added:
                    cur_res[unique_index] = [{'caption': remove_nonascii(pred['sentence'])}]
                    cur_gts[unique_index] = [{'caption': self.garbage()}]
                    vid2capid[vid_id].append(unique_index)
                    unique_index += 1

        per_video = {vid_id: [None, None, None, None] for vid_id in self.vids}
        for k, (scorer, method) in enumerate(self.scorers):
            tokenize_res = self.tokenizer.tokenize(cur_res) if cur_res else {}
            tokenize_gts = self.tokenizer.tokenize(cur_gts) if cur_gts else {}
            for vid_id in self.vids:
                res = {index: tokenize_res[index] for index in vid2capid[vid_id]}
                gts = {index: tokenize_gts[index] for index in vid2capid[vid_id]}
                if len(res) == 0 or len(gts) == 0:
                    score = [0] * len(method) if isinstance(method, list) else 0
                elif isinstance(scorer, Bleu):
                    score, _ = scorer.compute_score(gts, res, verbose=0)
                else:
                    score, _ = scorer.compute_score(gts, res)
                per_video[vid_id][k] = score
        return average_over_videos(list(per_video.values()))

    def evaluate_detection(self, tiou_threshold):
        recall = [0] * len(self.vids)
        precision = [0] * len(self.vids)
        for vid_i, vid_id in enumerate(self.vids):
            best_recall = 0
            best_precision = 0
            for gt in self.ground_truths:
                if vid_id not in gt:
                    continue
                refs = gt[vid_id]
                ref_set_covered = set([])
                pred_set_covered = set([])
                if vid_id in self.prediction:
                    for pred_i, pred in enumerate(self.prediction[vid_id]):
                        for ref_i, ref_timestamp in enumerate(refs['timestamps']):
                            if tiou(pred['timestamp'], ref_timestamp) > tiou_threshold:
                                ref_set_covered.add(ref_i)
                                pred_set_covered.add(pred_i)
                    # the official divides by (pred_i + 1); an empty list scores 0 (spec evaluation §3.3)
                    new_precision = float(len(pred_set_covered)) / max(len(self.prediction[vid_id]), 1)
                    best_precision = max(best_precision, new_precision)
                new_recall = float(len(ref_set_covered)) / len(refs['timestamps'])
                best_recall = max(best_recall, new_recall)
            recall[vid_i] = best_recall
            precision[vid_i] = best_precision
        return sum(precision) / len(precision), sum(recall) / len(recall)


def score_dense_reference(predictions, references, vids, tious, garbage):
    """Same output as ``dense.score_dense``, by the official loop."""
    loop = OfficialLoop(predictions, references, vids, garbage)
    per_tiou = [loop.evaluate_tiou(t) for t in tious]
    for k, t in enumerate(tious):
        per_tiou[k]['Precision'], per_tiou[k]['Recall'] = loop.evaluate_detection(t)
    return per_tiou
