"""Offline scoring: a folder or list of videos -> prediction.txt, resumable and shardable."""
