"""fpenc: prove ownership of neural networks by UAP fingerprinting (Peng et al., CVPR 2022)."""

__version__ = "0.1.0"
