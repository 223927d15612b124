"""Video container checks shared by the API and the workers: probe metadata and limits without decoding.

PyAV only (never torch), so the API can refuse a file from its declared size / duration / frame count
before storing it, and the worker can re-check the same limits before decoding.
"""
