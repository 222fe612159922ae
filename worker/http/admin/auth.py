"""Access to the admin page: the admin token, a signed session cookie, CSRF protection.

* Sign-in form -> a session cookie (`worker_admin`): a random session id signed with itsdangerous under a key
  derived from the admin token (HMAC of a fixed label), HttpOnly, SameSite=Strict, Path=/admin, for 12 hours.
  Rotating the token changes the key, so every session ends.
* `Authorization: Bearer <admin token>` for scripts using the JSON API (compared in constant time).
* CSRF: a state-changing request authenticated by the cookie must carry the session's CSRF token (header
  `X-CSRF-Token` or form field `csrf_token`; an HMAC of the session id) and an `Origin` (or `Referer`) naming
  this host. Bearer calls are exempt: a browser cannot attach that header to a forged request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["COOKIE", "CSRF_HEADER", "SESSION_MAX_AGE_S", "AdminAuth", "Principal"]

COOKIE = "worker_admin"
CSRF_HEADER = "x-csrf-token"
SESSION_MAX_AGE_S = 12 * 3600


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["cookie", "bearer"]
    session_id: str | None = None


class AdminAuth:
    def __init__(self, token: str) -> None:
        self._token = token.encode()
        cookie_key = hmac.new(self._token, b"worker-admin/session-cookie/v1", hashlib.sha256).hexdigest()
        self._signer = URLSafeTimedSerializer(cookie_key, salt="worker-admin-session")
        self._csrf_key = hmac.new(self._token, b"worker-admin/csrf/v1", hashlib.sha256).digest()

    # --- the token ------------------------------------------------------------------------------
    def token_matches(self, supplied: str) -> bool:
        return hmac.compare_digest(supplied.encode(), self._token)

    def bearer(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and bool(value.strip()) and self.token_matches(value.strip())

    # --- sessions -------------------------------------------------------------------------------
    def start_session(self, response: Response, *, secure: bool) -> str:
        session_id = secrets.token_urlsafe(24)
        response.set_cookie(
            COOKIE, self._signer.dumps({"sid": session_id}), max_age=SESSION_MAX_AGE_S, path="/admin",
            httponly=True, samesite="strict", secure=secure,
        )
        return session_id

    @staticmethod
    def end_session(response: Response) -> None:
        response.delete_cookie(COOKIE, path="/admin", httponly=True, samesite="strict")

    def session_id(self, request: Request) -> str | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data = self._signer.loads(raw, max_age=SESSION_MAX_AGE_S)
        except BadSignature:
            return None
        sid = data.get("sid") if isinstance(data, dict) else None
        return sid if isinstance(sid, str) and sid else None

    def principal(self, request: Request) -> Principal | None:
        """Who is asking: a bearer-token script, a signed-in browser, or nobody (None)."""
        if request.headers.get("authorization"):
            return Principal("bearer") if self.bearer(request) else None
        sid = self.session_id(request)
        return Principal("cookie", sid) if sid else None

    # --- CSRF -----------------------------------------------------------------------------------
    def csrf_token(self, session_id: str) -> str:
        return hmac.new(self._csrf_key, session_id.encode(), hashlib.sha256).hexdigest()

    def csrf_problem(self, request: Request, principal: Principal, form_token: str | None = None) -> str | None:
        """Why this state-changing request must be refused (None: it may proceed)."""
        if principal.kind == "bearer":
            return None
        origin_problem = same_origin_problem(request)
        if origin_problem:
            return origin_problem
        supplied = request.headers.get(CSRF_HEADER) or form_token or ""
        assert principal.session_id is not None
        if not hmac.compare_digest(supplied.encode(), self.csrf_token(principal.session_id).encode()):
            return "missing or wrong CSRF token"
        return None


def same_origin_problem(request: Request) -> str | None:
    """The request's Origin (or, failing that, Referer) must name this host."""
    host = request.headers.get("host", "")
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        origin = request.headers.get("referer")
    if not origin:
        return "cross-site request refused: no Origin header"
    if urlsplit(origin).netloc.lower() != host.lower():
        return "cross-site request refused: foreign Origin"
    return None
