"""Hierarchical DINO pretraining of ViT_patch (on patches) and ViT_region (on patch-feature grids)."""
