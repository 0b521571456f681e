"""Test helpers: generated media, tiny datasets, WebRTC peers (import as tests.support.X)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
