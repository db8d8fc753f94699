"""The stages of feature extraction, wired by :class:`source.engines.extract.Extractor`.

- :mod:`.reading`: planned regions -> batches of uint8 pixels (workers read and decode; raw JPEG tiles are decoded in
  batches on the encoder's device);
- :mod:`.tissue`: the tissue fraction of every patch of a batch (tiling contours, or the pixels on the host / device);
- :mod:`.encoding`: pixels on the device -> the level's features, on their way to the host;
- :mod:`.assembly`: batches of features -> whole slides, each finished when its last region is in;
- :mod:`.storing`: what is done already (resume, stale temporaries) and the feature file of a finished slide;
- :mod:`.outcomes`: what became of each slide, and the ``slides.csv`` / ``regions.csv`` tables.
"""
