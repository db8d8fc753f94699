"""Whole-slide input: tissue tiling (hs2p), region coordinates, pyramid reading, previews."""
