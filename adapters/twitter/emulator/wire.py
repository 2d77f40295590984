"""Wire-level pieces of the X emulator: X's problem bodies and small request
helpers (what X answers on errors, per the recordings and X's docs)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

PUBLIC_BASE = "https://api.twitter.com"
PROBLEM = "application/problem+json"
# The current spec and API name problem types under api.x.com (2021-23
# recordings used api.twitter.com; clients must accept both).
PROBLEM_TYPE = "https://api.x.com/2/problems/"

TOO_MANY = {"title": "Too Many Requests", "type": "about:blank", "status": 429,
            "detail": "Too Many Requests"}
USAGE_CAPPED = {"title": "UsageCapExceeded", "type": PROBLEM_TYPE + "usage-capped", "status": 429,
                "detail": "Usage cap exceeded: Monthly product cap", "period": "Monthly",
                "scope": "Product"}
UNAUTHORIZED = {"title": "Unauthorized", "type": "about:blank", "status": 401,
                "detail": "Unauthorized"}
DUPLICATE = {"title": "Forbidden", "type": "about:blank", "status": 403,
             "detail": "You are not allowed to create a Tweet with duplicate content."}
NOT_SUMMONED = {"title": "Forbidden", "type": "about:blank", "status": 403,
                "detail": "Reply to this conversation is not allowed because you have not "
                          "been mentioned or otherwise engaged by the author of the post you "
                          "are replying to."}
APP_ONLY = {"title": "Unsupported Authentication",
            "type": PROBLEM_TYPE + "unsupported-authentication",
            "status": 403, "detail": "Authenticating with OAuth 2.0 Application-Only is "
            "forbidden for this endpoint.  Supported authentication types are "
            "[OAuth 1.0a User Context, OAuth 2.0 User Context]."}

USER_CONTEXT = {"title": "Unsupported Authentication",
                "type": PROBLEM_TYPE + "unsupported-authentication",
                "status": 403, "detail": "Authenticating with OAuth 1.0a User Context is "
                "forbidden for this endpoint.  Supported authentication types are "
                "[OAuth 2.0 Application-Only]."}
"""An app-only route (``/2/usage/tweets``: ``BearerToken`` alone in the spec's
``security``) called with user context."""


def client_forbidden(client_id: str) -> dict[str, Any]:
    """X's 403 for an app whose project (access level) does not include the route:
    not in the v2 spec, but the same body in every report of it (``reason``
    ``client-not-enrolled``, an api.twitter.com problem ``type``)."""
    return {"client_id": client_id,
            "detail": "When authenticating requests to the Twitter API v2 endpoints, you "
                      "must use keys and tokens from a Twitter developer App that is "
                      "attached to a Project. You can create a project via the developer "
                      "portal.",
            "registration_url": "https://developer.twitter.com/en/docs/projects/overview",
            "title": "Client Forbidden", "required_enrollment": "Appropriate Level of API Access",
            "reason": "client-not-enrolled",
            "type": "https://api.twitter.com/2/problems/client-forbidden"}


def invalid(message: str, **params: Any) -> web.Response:
    body = {"errors": [{"parameters": {k: [str(v)] for k, v in params.items()},
                        "message": message}],
            "title": "Invalid Request", "detail": "One or more parameters to your request "
            "was invalid.", "type": PROBLEM_TYPE + "invalid-request"}
    return web.json_response(body, status=400, content_type=PROBLEM)


def problem(body: dict[str, Any], status: int | None = None) -> web.Response:
    """*body* as a problem response, its HTTP status its ``status`` unless given."""
    return web.json_response(body, status=status or int(body["status"]),
                             content_type=PROBLEM)


def not_found(tid: str) -> dict[str, Any]:
    return {"value": tid, "detail": f"Could not find tweet with id: [{tid}].",
            "title": "Not Found Error", "resource_type": "tweet", "parameter": "id",
            "resource_id": tid, "type": PROBLEM_TYPE + "resource-not-found"}


def csv_param(request: web.Request, *names: str) -> set[str]:
    out: set[str] = set()
    for n in names:
        out.update(x for x in request.query.get(n, "").split(",") if x)
    return out
