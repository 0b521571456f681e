"""The live monitor: sources -> buffers -> windowing -> crops -> scorer -> state -> events.

Ingest (decode, windowing, crops) may run in worker processes; scoring, per-stream state,
metrics, events and the HTTP service run in one asyncio process.
"""
