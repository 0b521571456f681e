"""Inference engines: ONNX export, TensorRT build, backends behind one interface."""
