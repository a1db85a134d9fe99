"""ILCACM training losses (spec ilcacm §4.2-4.4).

The authors train on 8 processes x 8 videos (spec §4.4): each process takes the token mean of the cross-entropy of
its own 8 videos' sequences (HF's loss, spec §3.2.6) and DeepSpeed averages the gradients, so a global batch's
caption loss is the mean of 8 token means over groups of 8 videos. `--loss-groups G` keeps that objective whatever
runs it: the global batch's videos, in their global order, form G groups of batch_size / G consecutive videos
(a video's stage-2 sequences stay in its group), and the loss is the mean over groups of each group's token mean,
in stage 1 and for the positive and the negative losses; `--loss-groups 1` is the token mean of the whole global
batch. L_div is a mean over the global batch's videos either way (the mean of per-process means of equal size).

So that one process and N torchrun processes (and any gradient accumulation) optimise exactly the same quantity,
each micro-batch returns per-sequence *sums* (`ce_seq`) and the sum of L_div over its videos (`div`); `normalise`
weights each sequence by 1 / (G * tokens of its group), with the counts of the whole global batch.
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


class LossGroupError(ValueError):
    """--loss-groups does not split the global batch into equal groups of videos."""


def check_loss_groups(batch_videos, loss_groups):
    if loss_groups < 1 or batch_videos % loss_groups:
        raise LossGroupError(f'--loss-groups {loss_groups} does not split the global batch of {batch_videos} '
                             'videos into equal groups (--batch-size must be a multiple of --loss-groups)')


def loss_groups_of(positions, batch_videos, loss_groups):
    """Loss group of the videos at `positions` (a tensor) of a global batch of `batch_videos` videos: consecutive
    groups of batch_videos / loss_groups."""
    check_loss_groups(batch_videos, loss_groups)
    return positions // (batch_videos // loss_groups)


def sequence_weights(sequence_groups, group_tokens):
    """Weight of each sequence's summed CE in the loss: 1 / (number of groups * tokens of its group)."""
    return 1.0 / (len(group_tokens) * group_tokens[sequence_groups])


def normalise(sums, weights, totals, use_diversity=True):
    """Loss of one micro-batch's share of the global batch: sum_s weights_s * ce_s (+ div / total_videos).

    `weights` come from `sequence_weights` over the global batch's group token counts, `totals` holds the global
    number of `videos` and the `world` size: multiplying by it undoes DDP's gradient averaging, so the result is
    the global-batch loss.
    """
    loss = (sums['ce_seq'] * weights).sum()
    if use_diversity and 'div' in sums:
        loss = loss + sums['div'] / totals['videos']
    return loss * totals['world']
