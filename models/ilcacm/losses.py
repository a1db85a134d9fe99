"""ILCACM training losses (spec ilcacm §4.2-4.3).

The caption losses are token-averaged cross-entropies and L_div is a mean over videos. So that one process and
N torchrun processes (and any gradient accumulation) optimise exactly the same quantity, each micro-batch returns
*sums* (`ce`, `div`) with their counts (`tokens`, `videos`); `normalise` divides by the counts of the whole global
batch, i.e. the loss of the global batch of 64 videos taken at once (spec §10.2).
"""
import torch

LOSS_SETS = {'pos+neg': ('pos', 'neg'), 'pos': ('pos',), 'neg': ('neg',)}


def diversity_loss(masks, counts, gamma=0.8):
    """L_div = mean_b mean_{k != j} relu(cos(M_k, M_j) - gamma) (spec §4.3); a video with one event adds 0
    (the released code gives NaN there, spec §10.3)."""
    per_video = []
    for video_masks in masks.split(list(counts)):
        n = video_masks.shape[0]
        if n < 2:
            per_video.append(video_masks.sum() * 0)
            continue
        unit = video_masks / video_masks.norm(dim=1, keepdim=True).clamp_min(1e-12)
        similarity = unit @ unit.t()
        off_diagonal = ~torch.eye(n, dtype=torch.bool, device=masks.device)
        per_video.append(torch.relu(similarity[off_diagonal] - gamma).mean())
    return torch.stack(per_video).mean()


def normalise(sums, totals, use_diversity=True):
    """Loss of one micro-batch's share of the global batch: ce / total_tokens (+ div / total_videos).

    `totals` holds the global counts `tokens` and `videos` (summed over micro-batches and processes);
    multiplying by the world size undoes DDP's gradient averaging so the result is the global-batch loss.
    """
    loss = sums['ce'] / totals['tokens']
    if use_diversity and 'div' in sums:
        loss = loss + sums['div'] / totals['videos']
    return loss * totals['world']
