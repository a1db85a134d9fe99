"""Feature extractors from raw video: CLIP image features for ILCACM (`clip`), C3D fc7 + PCA for WSDEC (`c3d`).

Each module holds one paper's extractor: its frame geometry, its preprocessing and its network in plain PyTorch,
loading the public weight files. `models/extractors/pipeline.py` runs them over videos.
"""
