"""``POST /v1/jobs`` (submit a speech job) and ``GET /v1/jobs/<id>``.

The route only speaks HTTP: it parses the body (media type, JSON, unknown fields, the
``Idempotency-Key`` header) into a ``JobRequest``, hands it to the ``Intake``
(``actors/pipeline/intake.py``: validation, cache, quota, create + enqueue) and shows the job:
202 while it is queued or running, 200 once it is final (a cache hit or an idempotent repeat).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from quart import Blueprint, Response, request

from protocols.errors import InvalidInput, NotFound
from protocols.messages import JobRequest
from web.auth import current_user
from web.inputs import decode_as, json_object, reject_nul, stored_id
from web.problems import IdempotencyKeyMismatch, UnsupportedMediaType, json_response
from web.views import job_view

if TYPE_CHECKING:
    from web.context import WebContext


def parse_body(body: bytes) -> JobRequest:
    """Decode and type-check the body: 400 malformed_json / json_too_deep, 422 unknown_field /
    invalid_character / invalid_input (naming the field)."""
    mimetype = request.mimetype
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type must be application/json, not {mimetype}.")
    return decode_as(json_object(body), JobRequest)


def idempotency_key(body_key: str | None) -> str | None:
    header = request.headers.get("Idempotency-Key")
    if header is not None:
        header = header.strip()
        if not 1 <= len(header) <= 255:
            raise InvalidInput("The Idempotency-Key header must be 1 to 255 characters.")
        reject_nul(header, "Idempotency-Key")
        if body_key is not None and body_key != header:
            raise IdempotencyKeyMismatch(
                "The Idempotency-Key header and the idempotency_key field differ."
            )
        return header
    return body_key


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("jobs", __name__)

    @bp.post("/v1/jobs")
    async def submit_job() -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        req = parse_body(await request.get_data(cache=False))
        key = idempotency_key(req.idempotency_key)
        if key != req.idempotency_key:
            req = msgspec.structs.replace(req, idempotency_key=key)
        job, _ = await ctx.intake.submit(req, user)
        location = {"Location": f"/v1/jobs/{job.id}"}
        status = 200 if job.status.terminal else 202
        return json_response(job_view(job, ctx.audio_signer), status, location)

    @bp.get("/v1/jobs/<job_id>")
    async def get_job(job_id: str) -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        job = await ctx.store.get_job(stored_id(job_id, "job"), owner=user.id)
        if job is None:
            raise NotFound(f"No job {job_id!r}.")
        return json_response(job_view(job, ctx.audio_signer), 200, {"Cache-Control": "no-store"})

    return bp
