"""deepfake-monitor runtime: media, face crops, windows, live pipeline, scoring, CLI."""
