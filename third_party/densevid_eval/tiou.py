"""densevid_eval's temporal IoU, with the union capped at len1 + len2 (spec evaluation §3.2).

Both functions evaluate the same floating-point expression in the same order as the official ``iou``
(``interval_1`` = the prediction), so the scalar and the vectorised value are bit-identical.
"""
import numpy as np


def tiou(pred, gt):
    """IoU of two ``[start, end]`` segments: inter / (min(max_end - min_start, len1 + len2) + 1e-8)."""
    start_i, end_i = pred[0], pred[1]
    start, end = gt[0], gt[1]
    intersection = max(0, min(end, end_i) - max(start, start_i))
    union = min(max(end, end_i) - min(start, start_i), end - start + end_i - start_i)
    return float(intersection) / (union + 1e-8)


def tiou_elementwise(preds, gts):
    """``tiou`` of ``preds[..., :]`` and ``gts[..., :]`` with numpy broadcasting (last axis = start, end)."""
    p, g = np.asarray(preds, dtype=np.float64), np.asarray(gts, dtype=np.float64)
    start_i, end_i = p[..., 0], p[..., 1]
    start, end = g[..., 0], g[..., 1]
    intersection = np.maximum(0.0, np.minimum(end, end_i) - np.maximum(start, start_i))
    union = np.minimum(np.maximum(end, end_i) - np.minimum(start, start_i), end - start + end_i - start_i)
    return intersection / (union + 1e-8)


def tiou_matrix(preds, gts):
    """``(n_pred, n_gt)`` array of ``tiou(preds[i], gts[j])``; inputs are ``(n, 2)`` array-likes."""
    p = np.asarray(preds, dtype=np.float64).reshape(-1, 2)
    g = np.asarray(gts, dtype=np.float64).reshape(-1, 2)
    return tiou_elementwise(p[:, None, :], g[None, :, :])
