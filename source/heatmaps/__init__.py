"""Attention heatmaps of HIPT's three transformers: patch, region, factorized and slide level."""
