"""HIPT: Hierarchical Image Pyramid Transformer for computational pathology."""

__version__ = "0.1.0"
