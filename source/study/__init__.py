"""Statistics for comparing trained models: bootstrap, DeLong, fold t-tests, multiplicity, calibration, metrics."""
