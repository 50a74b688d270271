"""Admin routes (role ``admin`` only; 403 for anyone else): users, their API keys and quotas.

- ``GET  /v1/admin/users``: every user; ``POST`` creates one and returns its first key, once.
- ``GET  /v1/admin/users/<id>``: one user with its keys (never the keys themselves).
- ``POST /v1/admin/users/<id>/keys``: another key for the user (shown once).
- ``POST /v1/admin/keys/<key_id>/rotate``: revoke a key and make its successor (shown once).
- ``DELETE /v1/admin/keys/<key_id>``: revoke a key.
- ``PUT | DELETE /v1/admin/users/<id>/quota``: set (``{"monthly_quota": n | null}``) or clear.

A revoked key stops at once in this process (its user is forgotten from the auth cache) and
within ``web.auth.AUTH_TTL_S`` in every other. New keys are answered with
``Cache-Control: no-store`` and never logged. ``run.py users`` uses the same store methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import msgspec
from quart import Blueprint, Response, request

from protocols.errors import Forbidden, InvalidInput, NotFound, StoreUnavailable
from protocols.messages import ApiKey, User
from web.auth import current_user, forget_user
from web.inputs import decode_as, json_object, stored_id
from web.problems import json_response
from web.views import iso

if TYPE_CHECKING:
    from protocols.ports import AccountStore
    from web.context import WebContext

NO_STORE = {"Cache-Control": "no-store"}
MAX_NAME = 100
T = TypeVar("T")


class NewUser(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
    role: Literal["user", "admin"] = "user"
    monthly_quota: int | None = None


class NewKey(msgspec.Struct, forbid_unknown_fields=True):
    label: str | None = None


class Quota(msgspec.Struct, forbid_unknown_fields=True):
    monthly_quota: int | None


def user_view(user: User) -> dict[str, Any]:
    return {
        "id": user.id, "name": user.name, "role": user.role,
        "monthly_quota": user.monthly_quota, "created_at": iso(user.created_at),
    }


def key_view(key: ApiKey, secret: str | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": key.id, "user_id": key.owner, "label": key.label,
        "created_at": iso(key.created_at), "revoked_at": iso(key.revoked_at),
    }
    if secret is not None:
        view["key"] = secret  # shown this once
    return view


async def body_of(kind: type[T]) -> T:
    return decode_as(json_object(await request.get_data(cache=False) or b"{}"), kind)


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("admin_users", __name__)

    async def admin() -> AccountStore:
        user = await current_user(ctx.store, ctx.known_keys)
        if user.role != "admin":
            raise Forbidden("This route is for administrators.")
        if ctx.accounts is None:
            raise StoreUnavailable("user accounts are not available here")
        return ctx.accounts

    async def user_of(accounts: AccountStore, user_id: str) -> User:
        user = await accounts.get_user(stored_id(user_id, "user"))
        if user is None:
            raise NotFound(f"No user {user_id!r}.")
        return user

    @bp.get("/v1/admin/users")
    async def list_users() -> Response:
        await admin()
        users = await ctx.store.list_users()
        return json_response({"users": [user_view(u) for u in users]}, 200, NO_STORE)

    @bp.post("/v1/admin/users")
    async def create_user() -> Response:
        accounts = await admin()
        new = await body_of(NewUser)
        if new.monthly_quota is not None and new.monthly_quota < 0:
            raise InvalidInput("monthly_quota cannot be negative.", field="monthly_quota")
        user, secret = await ctx.store.create_user(new.name, admin=new.role == "admin")
        if new.monthly_quota is not None:
            user = await ctx.store.set_quota(user.name, new.monthly_quota)
        (first,) = await accounts.list_api_keys(user.id)
        body = {"user": user_view(user), "api_key": key_view(first, secret)}
        return json_response(body, 201, {**NO_STORE, "Location": f"/v1/admin/users/{user.id}"})

    @bp.get("/v1/admin/users/<user_id>")
    async def get_user(user_id: str) -> Response:
        accounts = await admin()
        user = await user_of(accounts, user_id)
        keys = await accounts.list_api_keys(user.id)
        body = {**user_view(user), "api_keys": [key_view(k) for k in keys]}
        return json_response(body, 200, NO_STORE)

    @bp.post("/v1/admin/users/<user_id>/keys")
    async def add_key(user_id: str) -> Response:
        accounts = await admin()
        user = await user_of(accounts, user_id)
        new = await body_of(NewKey)
        key, secret = await accounts.create_api_key(user.id, new.label)
        return json_response(key_view(key, secret), 201, NO_STORE)

    @bp.post("/v1/admin/keys/<key_id>/rotate")
    async def rotate_key(key_id: str) -> Response:
        accounts = await admin()
        rotated = await accounts.rotate_api_key(stored_id(key_id, "key"))
        if rotated is None:
            raise NotFound(f"No live API key {key_id!r}.")
        old, new, secret = rotated
        forget_user(ctx.known_keys, old.owner)
        body = {"revoked": key_view(old), "api_key": key_view(new, secret)}
        return json_response(body, 201, NO_STORE)

    @bp.delete("/v1/admin/keys/<key_id>")
    async def revoke_key(key_id: str) -> Response:
        accounts = await admin()
        key = await accounts.revoke_api_key(stored_id(key_id, "key"))
        if key is None:
            raise NotFound(f"No API key {key_id!r}.")
        forget_user(ctx.known_keys, key.owner)
        return json_response(key_view(key), 200, NO_STORE)

    @bp.put("/v1/admin/users/<user_id>/quota")
    async def set_quota(user_id: str) -> Response:
        accounts = await admin()
        user = await user_of(accounts, user_id)
        quota = (await body_of(Quota)).monthly_quota
        if quota is not None and quota < 0:
            raise InvalidInput("monthly_quota cannot be negative.", field="monthly_quota")
        user = await ctx.store.set_quota(user.name, quota)
        forget_user(ctx.known_keys, user.id)
        return json_response(user_view(user), 200, NO_STORE)

    @bp.delete("/v1/admin/users/<user_id>/quota")
    async def clear_quota(user_id: str) -> Response:
        accounts = await admin()
        user = await ctx.store.set_quota((await user_of(accounts, user_id)).name, None)
        forget_user(ctx.known_keys, user.id)
        return json_response(user_view(user), 200, NO_STORE)

    return bp
