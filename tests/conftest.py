"""Shared fixtures. GPU tests skip without CUDA; TensorRT tests skip without the library."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

N_TEST_PER_METHOD = {"real": 4, "voice_clone": 2, "face_swap": 1, "both": 1}


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


@pytest.fixture(scope="session")
def tiny_detector(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny detector trained on tests/tiny_dataset (about 40 CPU-seconds), shared by the
    offline-scoring and live end-to-end tests."""
    from tests.support.tiny_dataset import METHODS, TINY_CONTRACT, write_clip, write_dataset
    from train.config import make_config
    from train.loop import train

    root = tmp_path_factory.mktemp("auc")
    data = write_dataset(
        root / "data", {"real": 8, "voice_clone": 4, "face_swap": 3, "both": 1}, seed=1
    )
    test_dir = data / "testset"
    test_dir.mkdir()
    lines = ["video_name,target"]
    j = 0
    for method, n in N_TEST_PER_METHOD.items():
        a, v = METHODS[method]
        for _ in range(n):
            name = f"test_{j:03d}.mp4"  # names say nothing of the label
            write_clip(test_dir / name, bool(a), bool(v), seed=900 + j)
            lines.append(f"{name},{int(a or v)}")
            j += 1
    (data / "test_label.txt").write_text("\n".join(lines) + "\n")
    cfg = make_config(
        {
            "preset": "demo",
            "contract": {
                "window_seconds": TINY_CONTRACT.window_seconds,
                "hop_seconds": TINY_CONTRACT.hop_seconds,
                "k_crops": TINY_CONTRACT.k_crops,
                "crop_size": TINY_CONTRACT.crop_size,
            },
            "epochs": 12,
            "batch_size": 8,
            "lr": 3e-3,
            "warmup_steps": 2,
            "workers": 0,
            "cache_dir": str(root / "cache"),
            "augment": {"enabled": False},
            # the tiny clips are textures without a mouth: nothing for the sync loss to learn
            "sync_loss_weight": 0.0,
            "progress": False,
            "max_windows": 3,
        }
    )
    result = train(data, root / "run", cfg)
    return {"data": data, "checkpoint": result.best, "cache": root / "cache", "root": root}
