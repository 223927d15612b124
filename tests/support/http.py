"""Typed views of the JSON a Flask test client's response carries.

werkzeug types ``response.json`` as ``Any | None`` (it is None when the body is not JSON), so indexing it directly
fails the type check; `body` asserts the shape first and show the status and body when it is wrong.
"""

from __future__ import annotations

from typing import Any

from werkzeug.test import TestResponse


def _shown(response: TestResponse) -> str:
    return f"{response.status_code}: {response.get_data(as_text=True)[:2000]}"


def body(response: TestResponse) -> dict[str, Any]:
    """The response's JSON object; fails the test when the body is not a JSON object."""
    data = response.json
    assert isinstance(data, dict), _shown(response)
    return data
