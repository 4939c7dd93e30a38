"""Who may use the console: Airflow's auth manager decides, the console only asks.

A plugin's FastAPI app is not protected by the api-server (docs/reference/airflow-3.md), so every route depends on
:data:`ReadUser` or :data:`EditUser`. Both read the Airflow user from the JWT of the ``Authorization: Bearer``
header or the ``_token`` cookie the Airflow UI sets (``airflow.api_fastapi.core_api.security.get_user``): no
token gives 401, an invalid one 403. Reading needs the auth manager's read access to DAGs (GET), acting needs
edit access to DAGs (PUT): with the simple auth manager a Viewer reads and a User, Op or Admin acts.

Writes are protected against cross-site request forgery with a double-submit token: a random token in the
``dynamics_csrf`` cookie (SameSite=Strict, HttpOnly), which the console's React app reads from ``GET
/api/session`` (same-origin: a foreign site cannot read it) and repeats in the ``X-CSRF-Token`` header; a client
that authenticates with a bearer token (which a foreign site cannot send) needs none.
"""

from __future__ import annotations

import hmac
import secrets
from typing import TYPE_CHECKING, Annotated

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, HTTPException, Request, Response, status

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.base_auth_manager import ResourceMethod

CSRF_COOKIE = "dynamics_csrf"
CSRF_HEADER = "X-CSRF-Token"


def _authorized(user: BaseUser, method: ResourceMethod) -> bool:
    return get_auth_manager().is_authorized_dag(method=method, details=DagDetails(id=None), user=user)


def can_edit(user: BaseUser) -> bool:
    """Whether ``user`` may use the console's actions (pages hide the buttons otherwise)."""
    return _authorized(user, "PUT")


def read_user(user: GetUserDep) -> BaseUser:
    """The signed-in user, when the auth manager lets them read DAGs.

    :raises HTTPException: 401 without a token, 403 with an invalid token or without read access.
    """
    if not _authorized(user, "GET"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")
    return user


def edit_user(user: GetUserDep) -> BaseUser:
    """The signed-in user, when the auth manager lets them edit DAGs (the console's write actions).

    :raises HTTPException: 401 without a token, 403 with an invalid token or without edit access.
    """
    if not can_edit(user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden: this action needs edit permission")
    return user


ReadUser = Annotated[BaseUser, Depends(read_user)]
EditUser = Annotated[BaseUser, Depends(edit_user)]


def csrf_token(request: Request, response: Response) -> str:
    """The request's CSRF token, issuing a new cookie when the browser has none yet.

    The cookie is scoped to the console's mount point (the ASGI ``root_path``).
    """
    token = request.cookies.get(CSRF_COOKIE)
    if not token:
        token = secrets.token_urlsafe(32)
        set_csrf_cookie(response, token, request.scope.get("root_path") or "/")
    return token


def set_csrf_cookie(response: Response, token: str, path: str) -> None:
    """Attach the CSRF cookie to ``response``."""
    response.set_cookie(CSRF_COOKIE, token, path=path, httponly=True, samesite="strict", secure=False)


def check_csrf(request: Request, submitted: str | None) -> None:
    """Compare the submitted token with the cookie in constant time.

    :raises HTTPException: 403 when either is missing or they differ.
    """
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted or not hmac.compare_digest(cookie, submitted):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "CSRF token missing or invalid")


def check_api_csrf(request: Request) -> None:
    """Dependency of every JSON write: a bearer token, or the ``X-CSRF-Token`` header matching the cookie.

    :raises HTTPException: 403 when a cookie-authenticated call lacks the matching header.
    """
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return
    check_csrf(request, request.headers.get(CSRF_HEADER))
