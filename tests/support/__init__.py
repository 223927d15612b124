"""Helpers the test modules share (videos, services, the fault stack, webhook receivers, interop vectors, typed
JSON bodies of test-client responses).

Test modules import from here or take conftest fixtures, never from one another.
"""
