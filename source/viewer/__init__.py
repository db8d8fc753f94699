"""The slide viewer (``view_slides.py``): a static site of deep-zoom slides with their attention and contributions."""
