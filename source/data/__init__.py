"""Inputs: region images of slides, slide-feature datasets, label tables."""
