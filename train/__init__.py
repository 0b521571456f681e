"""Training: competition-format datasets, the detector, training, evaluation, synthetic data."""
