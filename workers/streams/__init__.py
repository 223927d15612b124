"""Live-stream workers (``python -m workers.streams``): each holds the pack's models and the sessions it claimed,
and scores their frames from Redis as they come (see workers/streams/worker.py)."""
