"""Verity's shared core: code the API, the workers, the models and the tools all use.

It imports neither torch nor the database layer (import-linter enforces it), so the API process can use all of it.
"""
