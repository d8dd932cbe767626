"""LangGraph Server auth (langgraph.json `auth.path`): bearer tokens name a user, who sees only their own.

With `CONVOMEM_API_TOKENS="token:identity,..."` every request needs `Authorization: Bearer <token>`;
threads are stamped with their creator's identity and every thread, run, history and state request
is filtered to it, so another user's thread answers 404. Runs execute as the caller: the run's
context `user_id` (the memory namespace the graph reads and writes) is replaced by the identity, so
a caller cannot write into, or read from, someone else's memory by naming them. The HTTP /store API
is confined to the caller's ("convomem", "users", <identity>, ...) namespaces.

Without tokens the server is a single-user tool: any loopback client is the local user
(`CONVOMEM_USER_ID`, "default") and nothing is filtered, so `langgraph dev` keeps working with no
configuration; a client from any other address is refused, since nothing would tell users apart.

With or without tokens, every run request passes the turn's input rules here, before the server creates
the run or writes anything (graphs.run_requests): a refused input answers a 4xx with the same one-line
message the CLI prints.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Mapping
from typing import Any

from langgraph_sdk import Auth

from graphs.run_requests import check_assistant_request, check_run_request
from graphs.settings import Settings
from nodes.namespaces import user_namespace

__all__ = ["OWNER_KEY", "auth", "identify", "make_auth", "scoped_namespace"]

OWNER_KEY = "owner"
"""Thread metadata key holding the identity of the user who created the thread."""

_log = logging.getLogger("convomem.auth")


def _refuse(detail: str) -> Auth.exceptions.HTTPException:
    return Auth.exceptions.HTTPException(
        status_code=401, detail=detail, headers={"WWW-Authenticate": 'Bearer realm="convomem"'}
    )


def _is_loopback(scope: Mapping[str, Any]) -> bool:
    client = scope.get("client")
    try:
        return client is not None and ipaddress.ip_address(client[0]).is_loopback
    except ValueError:  # not an IP address (a unix socket peer, a test client's name)
        return False


def _identity_of(authorization: str | None, tokens: Mapping[str, str]) -> str | None:
    """The identity whose token the header carries; every token is compared, in constant time each."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    offered = token.strip().encode()
    found = None
    for known, identity in tokens.items():
        if hmac.compare_digest(offered, known.encode()):
            found = identity
    return found


def scoped_namespace(namespace: tuple[str, ...] | list[str] | None, identity: str) -> tuple[str, ...]:
    """A store namespace moved under the caller's own root; another user's namespace is refused (403).

    (), ("convomem",) and ("convomem", "users") mean "all of mine"; any other foreign namespace is
    prefixed with the caller's root, so it can only ever name the caller's data.
    """
    own = user_namespace(identity)
    requested = tuple(namespace or ())
    if requested[: len(own)] == own:
        return requested
    if requested == own[: len(requested)]:
        return own
    if requested[: len(own) - 1] == own[:-1]:
        raise Auth.exceptions.HTTPException(status_code=403, detail="That memory belongs to another user.")
    return (*own, *requested)


def _as_user(update: Any, identity: str) -> Any:
    """A state update (a dict, or a list of (key, value) pairs) with any `user_id` set to `identity`."""
    if isinstance(update, dict) and "user_id" in update:
        return {**update, "user_id": identity}
    if isinstance(update, list):
        return [("user_id", identity) if _sets_user(pair) else pair for pair in update]
    return update


def _sets_user(pair: Any) -> bool:
    return isinstance(pair, list | tuple) and len(pair) == 2 and pair[0] == "user_id"


def identify(
    authorization: str | None, scope: Mapping[str, Any], tokens: Mapping[str, str], *, local_user: str
) -> str:
    """The identity a request acts as; Auth.exceptions.HTTPException (401) when it has none."""
    if not tokens:
        if not _is_loopback(scope):
            raise _refuse("This server has no CONVOMEM_API_TOKENS: it serves loopback clients only.")
        return local_user
    identity = _identity_of(authorization, tokens)
    if identity is None:
        raise _refuse("Send `Authorization: Bearer <token>` with a token from CONVOMEM_API_TOKENS.")
    return identity


def make_auth(tokens: Mapping[str, str], *, local_user: str) -> Auth:
    """The Auth object for a token table ({token: identity}); empty means the loopback single-user mode."""
    auth = Auth()

    @auth.authenticate
    async def authenticate(authorization: str | None, scope: dict[str, Any]) -> Auth.types.MinimalUserDict:
        """Token users are authenticated; the loopback local user is only trusted, and says so, so the
        graph can tell an identity it must act as (runtime.server_info.user) from a mere default."""
        identity = identify(authorization, scope, tokens, local_user=local_user)
        return {"identity": identity, "permissions": [], "is_authenticated": bool(tokens)}

    if tokens:
        _confine_to_owner(auth)
    else:

        @auth.on.threads.create_run
        async def create_run(ctx: Auth.types.AuthContext, value: Any) -> bool:
            """The turn's input rules; the single local user may run any thread."""
            await check_run_request(value)
            return True

        @auth.on.assistants.create
        async def create_assistant(ctx: Auth.types.AuthContext, value: Any) -> bool:
            """A LangGraph assistant per assistant file (`context={"assistant": name}`): a known name."""
            await check_assistant_request(value)
            return True

        @auth.on.assistants.update
        async def update_assistant(ctx: Auth.types.AuthContext, value: Any) -> bool:
            await check_assistant_request(value)
            return True

    return auth


def _confine_to_owner(auth: Auth) -> None:
    """Owner-scoped authorization; anything without a handler here (crons, assistant edits) is denied."""

    @auth.on
    async def deny_by_default(ctx: Auth.types.AuthContext, value: Any) -> bool:
        """Fail closed: a resource or action added to the server later is refused until allowed here."""
        return False

    @auth.on.threads.create
    async def create_thread(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType:
        value.setdefault("metadata", {})[OWNER_KEY] = ctx.user.identity
        return {OWNER_KEY: ctx.user.identity}

    @auth.on.threads.create_run
    async def create_run(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType:
        """Runs only on the caller's threads (a thread a run creates is theirs), acting as the caller.

        The run's context and configurable are what the graph sees as `runtime.context`: the identity
        goes into both, whatever the request said. State writes the run carries (input values, a
        resume's `update`) get the same `user_id`, because extract_entities prefers the state's
        user_id when it resumes a review; `goto` could hand a node any state at all, so it is refused.
        """
        await check_run_request(value, read_thread=False)
        identity = ctx.user.identity
        value.setdefault("metadata", {})[OWNER_KEY] = identity
        kwargs = value.setdefault("kwargs", {})
        kwargs["context"] = {**(kwargs.get("context") or {}), "user_id": identity}
        config = kwargs.setdefault("config", {})
        config["configurable"] = {**(config.get("configurable") or {}), "user_id": identity}
        command = kwargs.get("command") or {}
        if command.get("goto"):
            raise Auth.exceptions.HTTPException(
                status_code=403, detail="Commands with `goto` are not allowed."
            )
        if "update" in command:
            command["update"] = _as_user(command["update"], identity)
        kwargs["input"] = _as_user(kwargs.get("input"), identity)
        return {OWNER_KEY: identity}

    @auth.on.threads.update
    async def update_thread(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType:
        """The caller's threads only, and a metadata update cannot hand the thread to someone else."""
        metadata = value.get("metadata")
        if isinstance(metadata, dict) and OWNER_KEY in metadata:
            metadata[OWNER_KEY] = ctx.user.identity
        return {OWNER_KEY: ctx.user.identity}

    @auth.on.threads
    async def own_threads(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType:
        """Read, search and delete of threads, their runs, state and history: the caller's only."""
        return {OWNER_KEY: ctx.user.identity}

    @auth.on.assistants.read
    async def read_assistant(ctx: Auth.types.AuthContext, value: Any) -> bool:
        """The graph's own assistant is shared and holds no user data; creating or editing is denied."""
        return True

    @auth.on.assistants.search
    async def search_assistants(ctx: Auth.types.AuthContext, value: Any) -> bool:
        return True

    @auth.on.store
    async def own_memory(ctx: Auth.types.AuthContext, value: Any) -> bool:
        """The HTTP /store API only (the graph's own store calls are not filtered, nor need be)."""
        value["namespace"] = scoped_namespace(value.get("namespace"), ctx.user.identity)
        return True


def _from_settings(settings: Settings) -> Auth:
    tokens = settings.api_token_table
    if not tokens:
        _log.info(
            "CONVOMEM_API_TOKENS is not set: LangGraph Server serves loopback clients only, all as user %r.",
            settings.user_id,
        )
    return make_auth(tokens, local_user=settings.user_id)


auth = _from_settings(Settings())
"""The object langgraph.json names; built once when the server loads this module."""
