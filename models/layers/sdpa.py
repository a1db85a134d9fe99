"""Which scaled-dot-product-attention kernels the suite's transformers run with."""
from torch.nn.attention import SDPBackend, sdpa_kernel


def attention_kernels():
    """A context in which `F.scaled_dot_product_attention` (also inside `nn.MultiheadAttention`) uses the flash,
    memory-efficient or math kernels, never cuDNN's.

    On an H100 (torch 2.11) PyTorch otherwise picks cuDNN attention, which builds an execution plan for every new
    shape: about 9 ms of host time each, measured. ILCACM's shapes change with every batch (caption lengths) and
    every generated token (the cache grows), so a training step spent more time planning attention than
    computing. Same maths, other kernels; on the CPU nothing changes.
    """
    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])
