"""Verity's HTTP client library and the ``verity`` command line; it talks to the API over HTTP only."""
