"""ILCACM (Ge et al., AAAI 2025): GPT-2 (gpt2.py), video encoder, mask generator, dual-mode captioner, losses,
the top-level model (model.py) and its factory (factory.py). Spec: ../shared/spec/ilcacm.md."""
