"""The facade's one error answer: ``{"error": {"code", "message", ...extra}}``.

A module of its own because both the pure translation (:mod:`.translation`) and the routes
(:mod:`.facade`) produce errors, and the translation must not depend on the routes; the
shape is documented in the OpenAPI document (:mod:`.openapi`, ``ErrorBody``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.responses import JSONResponse


@dataclass(frozen=True)
class ApiError:
    """An HTTP error answer: ``{"error": {"code", "message", ...extra}}``."""

    status: int
    code: str
    message: str
    extra: dict[str, str] = field(default_factory=dict)

    def response(self) -> JSONResponse:
        body = {"error": {"code": self.code, "message": self.message, **self.extra}}
        return JSONResponse(body, status_code=self.status)


def not_found(instance_id: str, name: str) -> ApiError:
    return ApiError(
        404, "not-found", f"subscription {name!r} of instance {instance_id!r} does not exist"
    )
