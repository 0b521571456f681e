"""The weight average that training validates and saves (train/ema.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from train.ema import WeightAverage


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def test_average_follows_the_live_weights_with_a_ramped_decay() -> None:
    net = _net()
    ema = WeightAverage(net, decay=0.5)
    start = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    net.train()(torch.randn(8, 3))  # moves the BatchNorm running statistics
    # first update: decay min(0.5, 1/10) = 0.1, so the average moves 90 % of the way
    assert ema.current_decay() == pytest.approx(0.1)
    ema.update(net)
    live = net.state_dict()
    for name, value in ema.module.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, 0.1 * start[name] + 0.9 * live[name], atol=1e-6), name
        else:  # num_batches_tracked is copied, not averaged
            assert torch.equal(value, live[name])
    # later updates use the configured decay
    ema.updates = 100
    assert ema.current_decay() == 0.5
    before = ema.module[0].weight.clone()
    with torch.no_grad():
        net[0].weight.add_(2.0)
    ema.update(net)
    assert torch.allclose(ema.module[0].weight, 0.5 * before + 0.5 * net[0].weight)


def test_average_is_a_frozen_copy() -> None:
    net = _net()
    ema = WeightAverage(net, decay=0.99)
    assert not ema.module.training
    assert all(not p.requires_grad for p in ema.module.parameters())
    assert all(p.requires_grad for p in net.parameters())
    with torch.no_grad():
        net[0].weight.zero_()
    assert ema.module[0].weight.abs().sum() > 0  # not shared storage


def test_state_round_trip_and_bad_decay() -> None:
    net = _net()
    ema = WeightAverage(net, decay=0.9)
    for _ in range(3):
        ema.update(net)
    other = WeightAverage(_net(), decay=0.9)
    other.load_state_dict(ema.state_dict(), ema.module.state_dict())
    assert other.updates == 3 and other.current_decay() == ema.current_decay()
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="decay"):
            WeightAverage(net, decay=bad)
