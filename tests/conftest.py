"""Shared fixtures. GPU tests skip without CUDA; TensorRT tests skip without the library."""

from __future__ import annotations

import importlib.util

import pytest


def _has_cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def _has_tensorrt() -> bool:
    # a stubs-only or meta package can leave an importable `tensorrt` without the library
    if importlib.util.find_spec("tensorrt") is None:
        return False
    try:
        import tensorrt
    except Exception:
        return False
    return hasattr(tensorrt, "Builder")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    has_trt = _has_tensorrt()
    skip_trt = pytest.mark.skip(reason="needs the TensorRT libraries (import tensorrt failed)")
    cuda = None
    for item in items:
        if "gpu" in item.keywords:
            if cuda is None:
                cuda = _has_cuda()
            if not cuda:
                item.add_marker(skip_gpu)
        if "tensorrt" in item.keywords and not has_trt:
            item.add_marker(skip_trt)
