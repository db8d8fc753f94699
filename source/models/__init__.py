"""Encoders (ViT_patch, ViT_region), the HIPT region encoder and checkpoint loading."""
