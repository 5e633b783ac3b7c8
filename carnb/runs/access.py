"""Who may do what to a run: the single ``authorize_run_access`` rule, and run ownership (pure).

Theory of operation
-------------------
A run belongs to one ``agent_id``: a registered agent's id, or ``name:<slug>`` when an unbound
session started it with ``agent_name`` (an unauthenticated claim, so it is also tied to the
session that made it). A caller *owns* a run when

* its bound agent is the run's agent (never for ``name:`` runs: nobody authenticates as a name), or
* it is the very session that started the run, in this store's lifetime (``owner_session_id``
  plus the store's ``epoch``: session ids are per-process counters, so a session of a later
  process must never inherit a run of an earlier one).

The rule, one table (``RULES``): the owner may do everything; the host role may also read,
subscribe and cancel any run, but not write turns or complete a run it does not own (the host
ends someone else's run with ``cancel``, which records who ended it and why). Anyone else may do
nothing and learns nothing: callers answer them exactly as for an unknown run id.

:func:`resolve_owner` decides the owner of a new run (``runs.start``):

1. ``agent_id`` given: the host may start a run for any agent; a bound agent only for itself
   (another id is refused with :class:`~carnb.errors.Forbidden`, not silently replaced by the
   binding, so a client never records under an owner it did not expect). An unbound session
   has no identity to check the claim against, so its ``agent_id`` is taken as a name: the
   owner is ``name:<slug(agent_id)>`` (what the official agent loop sends when it runs without
   ``CAR_AGENT_ID``), never the registered agent of that id.
2. else the bound agent, if any (``agent_name`` is then only a label and is ignored);
3. else ``name:<slug(agent_name)>``;
4. else :class:`~carnb.errors.InvalidParams` (``agent_name is required ...``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from carnb.errors import Forbidden, InvalidParams

NAME_PREFIX: Final = "name:"

# Actions a caller may ask for on one run.
READ: Final = "read"
SUBSCRIBE: Final = "subscribe"
CANCEL: Final = "cancel"
RECORD_TURNS: Final = "record_turns"
COMPLETE: Final = "complete"
ACTIONS: Final = frozenset({READ, SUBSCRIBE, CANCEL, RECORD_TURNS, COMPLETE})

# role -> actions allowed. "owner" is checked first; "host" applies to non-owned runs.
RULES: Final[dict[str, frozenset[str]]] = {
    "owner": ACTIONS,
    "host": frozenset({READ, SUBSCRIBE, CANCEL}),
    "other": frozenset(),
}

_SLUG_DROP = re.compile(r"[^a-z0-9._-]+")
SLUG_MAX = 64


@dataclass(frozen=True)
class Caller:
    """Who is asking; the server builds it from the session (or passes the session itself)."""

    client_id: str  # the connection's id
    agent_id: str | None = None  # bound agent, if any
    is_host: bool = False


def as_caller(obj: Any) -> Caller:
    """A :class:`Caller` from a Caller or any session-like object.

    Accepts objects with ``client_id`` (such as
    :class:`carnb.protocol.session.ClientSession`), ``agent_id`` and ``is_host``, so a server
    handler can pass its session as is.
    """
    if isinstance(obj, Caller):
        return obj
    client_id = getattr(obj, "client_id", None)
    if not isinstance(client_id, str) or not client_id:
        raise TypeError(f"not a caller: {obj!r} has no client_id string")
    agent = getattr(obj, "agent_id", None)
    return Caller(
        client_id=client_id,
        agent_id=agent if isinstance(agent, str) else None,
        is_host=bool(getattr(obj, "is_host", False)),
    )


def slug(name: str) -> str:
    """Lower-case, runs of anything but ``a-z0-9._-`` become ``-``, trimmed, at most 64 chars."""
    text = _SLUG_DROP.sub("-", name.strip().lower()).strip("-._")
    return text[:SLUG_MAX].rstrip("-._")


def name_owner(agent_name: object, field_name: str = "agent_name") -> str:
    if not isinstance(agent_name, str):
        raise InvalidParams(f"{field_name} must be a string")
    s = slug(agent_name)
    if not s:
        raise InvalidParams(f"{field_name} must contain at least one letter or digit")
    return NAME_PREFIX + s


def resolve_owner(caller: Caller, agent_id: object = None, agent_name: object = None) -> str:
    """The owning ``agent_id`` of a run ``caller`` starts (rules in the module docstring)."""
    if agent_id is not None:
        if not isinstance(agent_id, str) or not agent_id:
            raise InvalidParams("agent_id must be a non-empty string")
        if agent_id.startswith(NAME_PREFIX):
            owner = name_owner(agent_id[len(NAME_PREFIX) :], "agent_id")
            if caller.is_host or caller.agent_id is None:
                return owner
        elif caller.is_host or agent_id == caller.agent_id:
            return agent_id
        elif caller.agent_id is None:
            return name_owner(agent_id, "agent_id")
        bound = (
            f"the bound agent is {caller.agent_id!r}" if caller.agent_id else "no agent is bound"
        )
        raise Forbidden(
            f"runs.start: agent_id {agent_id!r} is not this session's agent ({bound}); "
            "authenticate as that agent (session.auth {agent_id, token}) or omit agent_id"
        )
    if caller.agent_id is not None:
        return caller.agent_id
    if agent_name is not None:
        return name_owner(agent_name)
    raise InvalidParams(
        "agent_name is required when no agent is bound to the session "
        "(or authenticate as an agent with session.auth {agent_id, token})"
    )


def idempotency_scope(owner: str, caller: Caller, epoch: str) -> str:
    """The namespace an idempotency key lives in.

    For a registered agent it is the agent (the same key from the agent's next connection, or the
    host on its behalf, finds the same run). A ``name:`` owner is an unauthenticated claim, so its
    keys are private to the session that made them: another session using the same name and key
    gets a run of its own and learns nothing about the first.
    """
    if owner.startswith(NAME_PREFIX):
        return f"{owner}|{epoch}|{caller.client_id}"
    return owner


def is_owner(
    caller: Caller,
    run_agent_id: str,
    owner_session_id: str | None,
    owner_epoch: str | None,
    epoch: str,
) -> bool:
    if (
        caller.agent_id is not None
        and caller.agent_id == run_agent_id
        and not run_agent_id.startswith(NAME_PREFIX)
    ):
        return True
    return (
        owner_session_id is not None
        and owner_epoch == epoch
        and caller.client_id == owner_session_id
    )


def role_of(
    caller: Caller,
    run_agent_id: str,
    owner_session_id: str | None,
    owner_epoch: str | None,
    epoch: str,
) -> str:
    if is_owner(caller, run_agent_id, owner_session_id, owner_epoch, epoch):
        return "owner"
    return "host" if caller.is_host else "other"


def allowed(role: str, action: str) -> bool:
    """``authorize_run_access``: may a caller of ``role`` do ``action``?"""
    if action not in ACTIONS:
        raise ValueError(f"unknown run action {action!r}; expected one of {sorted(ACTIONS)}")
    return action in RULES[role]
