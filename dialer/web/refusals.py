"""A request the API understood but refuses, answered in the shape of FastAPI's own validation
errors (`{"detail": [{"loc", "msg", "type"}]}`), so the pages show both alike."""

from __future__ import annotations

from fastapi.responses import JSONResponse


def field_refused(field: str, message: str, where: str = "body", status: int = 422) -> JSONResponse:
    """`field` (of the body, or of the query with `where="query"`) cannot be as given."""
    return JSONResponse(
        {"detail": [{"loc": [where, field], "msg": message, "type": "refused"}]},
        status_code=status,
    )
