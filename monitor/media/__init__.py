"""Media: decoding (PyAV), face detection and crops, whole-clip windows.

One implementation shared by training, offline scoring and the live monitor, so the
detector sees identical inputs wherever it runs.
"""
