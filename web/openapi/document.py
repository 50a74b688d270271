"""The OpenAPI 3.1 document of an app, made from its routes at runtime.

Every rule of the app's ``url_map`` becomes a path (``<job_id>`` -> ``{job_id}``, typed by its
converter) with each of its methods (OPTIONS and the implicit HEAD left out); the operation
is described by ``web/openapi/catalog.py`` when listed there, else by the view's docstring
with a ``default`` answer. Schemas come from msgspec (``msgspec.json.schema_components``, JSON
Schema 2020-12, which OpenAPI 3.1 uses as is): request bodies from the Structs the routes
validate with, answers from ``web/openapi/shapes.py``. Errors are RFC 9457 problems (the
ElevenLabs- and OpenAI-shaped routes: those APIs' own error shapes, ``Op.errors_as``), grouped
by status, their ``code`` values listed in each answer's description.
"""

from __future__ import annotations

import re
import typing
from collections import defaultdict
from typing import Any

import msgspec
from quart import Quart

from protocols.errors import QuotaExceeded
from web.compat import errors as compat_errors
from web.openapi import catalog, compat_shapes, shapes
from web.openapi.terms import Answer, Error, Op

OPENAPI = "3.1.0"
REF = "#/components/schemas/{name}"
#: ``<converter(args):name>`` in a werkzeug rule
_VARIABLE = re.compile(r"<(?:(?P<conv>[a-zA-Z_][a-zA-Z0-9_]*)(?:\((?P<args>.*?)\))?:)?"
                       r"(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)>")
_CONVERTERS: dict[str, dict[str, Any]] = {
    "default": {"type": "string"}, "string": {"type": "string"}, "path": {"type": "string"},
    "int": {"type": "integer", "minimum": 0}, "float": {"type": "number", "minimum": 0},
    "uuid": {"type": "string", "format": "uuid"},
}
SECURITY = [{"bearer": []}, {"xi-api-key": []}]
PROBLEM_MEDIA = "application/problem+json"


def path_of(rule: str) -> tuple[str, list[dict[str, Any]]]:
    """``/v1/jobs/<job_id>`` -> (``/v1/jobs/{job_id}``, its path parameters)."""
    params: list[dict[str, Any]] = []
    for m in _VARIABLE.finditer(rule):
        schema = dict(_CONVERTERS.get(m.group("conv") or "default", {"type": "string"}))
        params.append({"name": m.group("name"), "in": "path", "required": True,
                       "schema": schema})
    return _VARIABLE.sub(lambda m: "{" + m.group("name") + "}", rule), params


class _Schemas:
    """Types met while walking the table, turned into components in one call at the end."""

    def __init__(self) -> None:
        self.types: list[Any] = [shapes.Problem, compat_shapes.ElevenLabsError,
                                       compat_shapes.OpenAIError]

    def ref(self, shape: Any) -> dict[str, Any]:
        if isinstance(shape, dict):
            return shape
        if isinstance(shape, tuple):  # one of these shapes
            return {"anyOf": [self.ref(s) for s in shape]}
        if typing.get_origin(shape) is list:  # a JSON array of one shape
            return {"type": "array", "items": self.ref(typing.get_args(shape)[0])}
        if shape not in self.types:
            self.types.append(shape)
        return {"$ref": REF.format(name=shape.__name__)}

    def components(self) -> dict[str, Any]:
        _, components = msgspec.json.schema_components(self.types, ref_template=REF)
        return dict(sorted(components.items()))


def _answer(answer: Answer, schemas: _Schemas) -> dict[str, Any]:
    out: dict[str, Any] = {"description": answer.description}
    if answer.media is not None:
        out["content"] = {answer.media: (
            {"schema": schemas.ref(answer.shape)} if answer.shape is not None else {}
        )}
        out["content"].update({media: {} for media in answer.also})
    if answer.headers:
        out["headers"] = {h: {"schema": {"type": "string"}} for h in answer.headers}
    return out


def _error_body(style: str, codes: list[str]) -> tuple[str, dict[str, Any]]:
    """(media type, schema) of an error answer in ``style`` whose code is one of ``codes``."""
    problem = {"allOf": [{"$ref": REF.format(name="Problem")},
                         {"properties": {"code": {"enum": codes}}}]}
    elevenlabs = {"allOf": [{"$ref": REF.format(name="ElevenLabsError")}, {"properties": {
        "detail": {"properties": {"status": {"enum": codes}}}}}]}
    openai = {"allOf": [{"$ref": REF.format(name="OpenAIError")}, {"properties": {
        "error": {"properties": {"code": {"enum": codes}}}}}]}
    if style == "elevenlabs":
        return "application/json", elevenlabs
    if style == "openai":
        return "application/json", openai
    if style == "compat":  # either SDK's shape, told apart by the request's key header
        return "application/json", {"anyOf": [elevenlabs, openai]}
    return PROBLEM_MEDIA, problem


def _restyled(status: int, code: str, style: str) -> list[tuple[int, str]]:
    """An error as the compatible shapes answer it (``web/compat/errors.py``): ElevenLabs
    says 401 for an exhausted quota, OpenAI's code for it is ``insufficient_quota``."""
    el = (compat_errors.EL_STATUS.get(code, status), code)
    oa = (status, "insufficient_quota" if code == QuotaExceeded.code else code)
    if style == "elevenlabs":
        return [el]
    if style == "openai":
        return [oa]
    if style == "compat":
        return list(dict.fromkeys([el, oa]))
    return [(status, code)]


def _errors(errors: tuple[Error, ...], style: str = "problem"
            ) -> dict[str, dict[str, Any]]:
    by_status: dict[int, list[str]] = defaultdict(list)
    titles: dict[int, str] = {}
    for error in errors:
        if isinstance(error, tuple):
            found = _restyled(*error, style)
        else:
            found = _restyled(error.status, error.code, style)
            for status, _ in found:
                if status == error.status:  # (not ElevenLabs' 401 for a spent quota)
                    titles.setdefault(status, error.title)
        for status, code in found:
            if code not in by_status[status]:
                by_status[status].append(code)
    out: dict[str, dict[str, Any]] = {}
    for status in sorted(by_status):
        codes = ", ".join(f"`{c}`" for c in by_status[status])
        headers = {}
        if status in (429, 503):
            headers["Retry-After"] = {"schema": {"type": "integer"},
                                      "description": "seconds to wait before trying again"}
        media, schema = _error_body(style, by_status[status])
        kind = "problem" if style == "problem" else "error"
        out[str(status)] = {
            "description": f"{titles.get(status, 'An error')} ({kind} codes: {codes})",
            "content": {media: {"schema": schema}},
            **({"headers": headers} if headers else {}),
            "x-problem-codes": by_status[status],
        }
    return out


def operation(op: Op, path_params: list[dict[str, Any]], schemas: _Schemas,
              op_id: str) -> dict[str, Any]:
    errors: list[Error] = []
    if op.auth:
        errors.extend(catalog.AUTH_ERRORS)
    if path_params:
        errors.append((404, "not_found"))
    errors.extend(op.errors)
    params = list(path_params) + [
        {"name": p.name, "in": p.where, "required": False, "schema": p.schema,
         **({"description": p.description} if p.description else {})}
        for p in op.params
    ]
    out: dict[str, Any] = {"operationId": op_id, "summary": op.summary, "tags": [op.tag]}
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {
            "required": not op.body_optional,
            "content": {"application/json": {"schema": schemas.ref(op.body)}},
        }
    elif op.form is not None:
        out["requestBody"] = {"required": True, "content": {"multipart/form-data": {
            "schema": op.form,
            "encoding": {name: {"contentType": "application/octet-stream"}
                         for name, s in op.form["properties"].items()
                         if s.get("format") == "binary" or s.get("type") == "array"},
        }}}
    responses = {str(s): _answer(a, schemas) for s, a in sorted(op.answers.items())}
    responses.update(_errors(tuple(errors), op.errors_as))
    out["responses"] = responses
    out["security"] = list(SECURITY) if op.auth else []
    return out


def undescribed(view: Any, path_params: list[dict[str, Any]], op_id: str) -> dict[str, Any]:
    """A route the table does not know (yet): its methods, path and docstring."""
    doc = (getattr(view, "__doc__", None) or "").strip()
    out: dict[str, Any] = {
        "operationId": op_id, "summary": doc.splitlines()[0] if doc else op_id,
        "responses": {"default": {"description": "not described yet", "content": {"*/*": {}}}},
        "security": list(SECURITY),
    }
    if path_params:
        out["parameters"] = path_params
    return out


def build(app: Quart, *, title: str = "Chorus", version: str = "0.1.0") -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``'s routes."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static":
            continue
        path, path_params = path_of(rule.rule)
        methods = sorted((rule.methods or set()) - {"OPTIONS"})
        if "GET" in methods and ("HEAD", rule.rule) not in catalog.OPERATIONS:
            methods.remove("HEAD")  # werkzeug adds HEAD to every GET
        view = app.view_functions.get(rule.endpoint)
        for method in methods:
            op_id = f"{method.lower()}_{rule.endpoint.replace('.', '_')}"
            op = catalog.OPERATIONS.get((method, rule.rule))
            paths.setdefault(path, {})[method.lower()] = (
                operation(op, path_params, schemas, op_id) if op is not None
                else undescribed(view, path_params, op_id)
            )
    return {
        "openapi": OPENAPI,
        "info": {
            "title": title, "version": version,
            "description": "Durable text-to-speech jobs. Authenticate with"
                           " `Authorization: Bearer <key>` or the `xi-api-key` header."
                           " Every error is an RFC 9457 problem (`application/problem+json`)"
                           " with a stable `code`, except on the ElevenLabs- and OpenAI-shaped"
                           " routes, which answer errors in those APIs' own shapes"
                           " (`{\"detail\": {\"status\", \"message\"}}`, `{\"error\": {...}}`)"
                           " with the codes each operation lists.",
        },
        "tags": [{"name": n, "description": d} for n, d in catalog.TAGS.items()],
        "paths": paths,
        "components": {
            "schemas": schemas.components(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "an API key as a bearer token"},
                "xi-api-key": {"type": "apiKey", "in": "header", "name": "xi-api-key",
                               "description": "an API key (ElevenLabs' header)"},
            },
        },
    }
