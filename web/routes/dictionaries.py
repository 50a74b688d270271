"""Pronunciation dictionaries over HTTP in ElevenLabs' shapes (``/v1/pronunciation-dictionaries``):
create from rules or from a PLS file, list, get, a version as PLS, add and remove rules (each a
new version), delete; and the caller's defaults (``/v1/user/pronunciation-dictionaries``).

The rules live in ``protocols/domain/dictionaries.py`` (``DictionaryCatalog``); bodies are
checked by ``protocols/dictionaries.py``'s Structs and ``web/inputs.py``. Another user's private
dictionary answers exactly like one that does not exist (404).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
import trio
from quart import Blueprint, Response, request

from protocols.dictionaries import (
    AddRulesRequest,
    DefaultsRequest,
    Dictionary,
    FromRulesRequest,
    RemoveRulesRequest,
)
from protocols.domain.dictionaries import (
    DictionaryCatalog,
    check_description,
    check_name,
    not_found,
)
from protocols.domain.pls import parse_pls, to_pls
from protocols.errors import InvalidInput
from web.auth import current_user, forget_caller
from web.inputs import decode_cursor, encode_cursor, reject_nul, stored_id
from web.problems import json_response
from web.routes.storybooks import parse
from web.routes.voice_uploads import NotMultipart, check_visibility
from web.views import iso

if TYPE_CHECKING:
    from web.context import WebContext

BASE = "/v1/pronunciation-dictionaries"
PAGE = 30
MAX_PAGE = 100


def dictionary_view(d: Dictionary, viewer: str, *, rules: bool = False) -> dict[str, Any]:
    """ElevenLabs' fields (both the create answer's ``version_*`` and the metadata's
    ``latest_version_*``), plus ours: ``visibility``, ``mine``, ISO times."""
    mine = d.owner == viewer
    view: dict[str, Any] = {
        "id": d.id, "name": d.name, "description": d.description,
        "version_id": d.version_id, "version_rules_num": d.rules_num,
        "latest_version_id": d.version_id, "latest_version_rules_num": d.rules_num,
        "visibility": d.visibility.value, "mine": mine,
        "created_by": d.owner if mine else None,
        "permission_on_resource": "admin" if mine else "viewer",
        "creation_time_unix": int(d.created_at.timestamp()), "archived_time_unix": None,
        "created_at": iso(d.created_at), "updated_at": iso(d.updated_at),
    }
    if rules:
        view["rules"] = msgspec.to_builtins(d.rules)
    return view


def changed_view(d: Dictionary) -> dict[str, Any]:
    """The answer to add-rules / remove-rules (ElevenLabs' shape)."""
    return {"id": d.id, "version_id": d.version_id, "version_rules_num": d.rules_num}


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("dictionaries", __name__)
    catalog = ctx.dictionaries or DictionaryCatalog(
        ctx.store, ctx.provider.dictionary_mirror()  # type: ignore[arg-type]
    )

    def path_id(value: str) -> str:
        return stored_id(value, "pronunciation dictionary", not_found)

    def created(d: Dictionary, viewer: str) -> Response:
        view = dictionary_view(d, viewer, rules=True)
        return json_response(view, 201, {"Location": f"{BASE}/{d.id}"})

    @bp.post(f"{BASE}/add-from-rules")
    async def from_rules() -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        body = parse(await request.get_data(cache=False), FromRulesRequest)
        made = await catalog.create(
            owner=user.id, name=check_name(body.name),
            description=check_description(body.description), rules=body.rules,
            visibility=check_visibility(body.visibility),
        )
        return created(made, user.id)

    @bp.post(f"{BASE}/add-from-file")
    async def from_file() -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        if request.mimetype != "multipart/form-data":
            raise NotMultipart(
                f"Content-Type must be multipart/form-data, not {request.mimetype}."
            )
        form, files = await request.form, await request.files
        for field in ("name", "description", "visibility"):
            reject_nul(form.get(field, ""), field)
        name = check_name(form.get("name"))
        description = check_description(form.get("description"))
        visibility = check_visibility(form.get("visibility"))
        upload = files.get("file")
        if upload is None:
            raise InvalidInput("Send the PLS lexicon as the 'file' field.", field="file")
        rules = await trio.to_thread.run_sync(parse_pls, upload.read())
        made = await catalog.create(owner=user.id, name=name, description=description,
                                    rules=rules, visibility=visibility)
        return created(made, user.id)

    @bp.get(BASE)
    async def list_dictionaries() -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        try:
            size = int(request.args.get("page_size", PAGE))
        except ValueError:
            size = 0
        if not 1 <= size <= MAX_PAGE:
            raise InvalidInput(f"page_size must be a number from 1 to {MAX_PAGE}.",
                               field="page_size")
        found = await catalog.store.list_dictionaries(
            user.id, after=decode_cursor(request.args.get("cursor")), limit=size + 1
        )
        more = len(found) > size
        found = found[:size]
        return json_response({
            "pronunciation_dictionaries": [dictionary_view(d, user.id) for d in found],
            "next_cursor": encode_cursor(found[-1].id) if more else None,
            "has_more": more,
        })

    @bp.get(f"{BASE}/<dictionary_id>")
    async def get_dictionary(dictionary_id: str) -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        found = await catalog.visible(path_id(dictionary_id), user.id)
        return json_response(dictionary_view(found, user.id, rules=True))

    @bp.get(f"{BASE}/<dictionary_id>/<version_id>/download")
    async def download(dictionary_id: str, version_id: str) -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        version = await catalog.version_of(path_id(dictionary_id), path_id(version_id), user.id)
        return Response(
            to_pls(version.rules), 200, content_type="application/pls+xml; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{version.version_id}.pls"'},
        )

    @bp.post(f"{BASE}/<dictionary_id>/add-rules")
    async def add_rules(dictionary_id: str) -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        path_id(dictionary_id)
        body = parse(await request.get_data(cache=False), AddRulesRequest)
        changed = await catalog.add_rules(dictionary_id, user.id, body.rules)
        return json_response(changed_view(changed))

    @bp.post(f"{BASE}/<dictionary_id>/remove-rules")
    async def remove_rules(dictionary_id: str) -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        path_id(dictionary_id)
        body = parse(await request.get_data(cache=False), RemoveRulesRequest)
        changed = await catalog.remove_rules(dictionary_id, user.id, body.rule_strings)
        return json_response(changed_view(changed))

    @bp.delete(f"{BASE}/<dictionary_id>")
    async def delete(dictionary_id: str) -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        await catalog.delete(path_id(dictionary_id), user.id)
        forget_caller(ctx.known_keys)  # it left their defaults (others skip it until then)
        return Response(b"", status=204)

    @bp.get("/v1/user/pronunciation-dictionaries")
    async def get_defaults() -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        return json_response({"locators": msgspec.to_builtins(user.dictionaries)})

    @bp.put("/v1/user/pronunciation-dictionaries")
    async def put_defaults() -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        body = parse(await request.get_data(cache=False), DefaultsRequest)
        stored = await catalog.set_defaults(user, body.locators)
        forget_caller(ctx.known_keys)  # this process sees the new defaults at once
        return json_response({"locators": msgspec.to_builtins(stored)})

    return bp
