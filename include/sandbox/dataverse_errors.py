"""Dataverse's 400 answer to a request body it cannot use, shared by the sandbox's Dataverse modules.

Dataverse answers a body that is not JSON, or not a JSON object, with error code ``0x80048d19`` and a message that
begins "Error identified in Payload provided by the user" (Dataverse Web API error codes,
https://learn.microsoft.com/power-apps/developer/data-platform/reference/web-service-error-codes).
"""

from __future__ import annotations

from typing import Any

from sandbox.api import ApiError, ApiRequest

BAD_REQUEST = "0x80048d19"


def bad_request(message: str, code: str = BAD_REQUEST) -> ApiError:
    """A 400 with Dataverse's error ``code`` (default: the payload error)."""
    return ApiError(400, code, message)


def json_object(request: ApiRequest) -> dict[str, Any]:
    """The request's JSON body, which must be an object.

    :raises ApiError: 400 ``0x80048d19`` when the body is not JSON or not a JSON object.
    """
    try:
        payload = request.json_body()
    except ValueError as exc:
        raise bad_request(f"Error identified in Payload provided by the user: {exc}") from exc
    if not isinstance(payload, dict):
        raise bad_request("Error identified in Payload provided by the user: a JSON object is required.")
    return payload
