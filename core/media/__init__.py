"""Video container checks and decoding shared by the API and the workers: probe, sniff, limits, decode.

PyAV and numpy only (never torch), so the API can refuse a file before storing it and the worker can re-check the
same limits and decode without a second implementation.
"""
