"""Inference engines: ONNX export, TensorRT build, backends behind one interface.

`engines.load_backend(model_path, backend="auto", device="auto")` is the entry point for
the monitor; it imports torch or TensorRT only when their backend is chosen.
"""

from engines.loader import load_backend

__all__ = ["load_backend"]
