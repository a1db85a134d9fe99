"""The 15 anchors of WSDEC's sentence localizer, in label order (spec wsdec §3.3, `ANCHOR_LIST`)."""
import torch

ANCHOR_LIST = (
    [(k / 4, 1 / 2) for k in (1, 2, 3)]             # 0-2
    + [(k / 6, 1 / 3) for k in (1, 3, 5)]           # 3-5
    + [((2 * j + 1) / 16, 1 / 8) for j in range(8)]  # 6-13
    + [(1 / 2, 1.0)]                                 # 14
)


def anchors() -> torch.Tensor:
    """The anchors as a `(15, 2)` float32 tensor of normalised `(c, w)`; row k ↔ class label k."""
    return torch.tensor(ANCHOR_LIST, dtype=torch.float32)
