"""What the routes do, as plain functions over a repository, an object store and the enqueue function.

No Flask here and no request: a test or a tool calls these directly with fakes or the real services. They
refuse with the typed errors of ``api.services.errors``, which the routes turn into HTTP responses.
"""
