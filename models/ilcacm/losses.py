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
    (the released code gives NaN there, spec §10.3).

    All videos at once: each video's unit masks padded to (B, n_max, T), their cosine matrices in one batched
    product, the off-diagonal pairs of the real events averaged per video."""
    counts = [int(n) for n in counts]
    n_max, device = max(counts), masks.device
    n = torch.tensor(counts, device=device)
    valid = torch.arange(n_max, device=device)[None, :] < n[:, None]                       # (B, n_max)
    unit = masks / masks.norm(dim=1, keepdim=True).clamp_min(1e-12)
    padded = unit.new_zeros(len(counts), n_max, unit.shape[1])
    padded[valid] = unit
    similarity = padded @ padded.transpose(1, 2)                                             # (B, n_max, n_max)
    pairs = valid[:, :, None] & valid[:, None, :] & ~torch.eye(n_max, dtype=torch.bool, device=device)
    per_pair = torch.relu(similarity - gamma) * pairs
    per_video = per_pair.sum((1, 2)) / (n * (n - 1)).clamp_min(1)
    return per_video.mean()


def normalise(sums, totals, use_diversity=True):
    """Loss of one micro-batch's share of the global batch: ce / total_tokens (+ div / total_videos).

    `totals` holds the global counts `tokens` and `videos` (summed over micro-batches and processes);
    multiplying by the world size undoes DDP's gradient averaging so the result is the global-batch loss.
    """
    loss = sums['ce'] / totals['tokens']
    if use_diversity and 'div' in sums:
        loss = loss + sums['div'] / totals['videos']
    return loss * totals['world']
