"""Chat turns with an attached agent: ``agents.chat`` (host side) and ``agent.chat.event`` (agent
side), as the real daemon relays them.

Theory of operation. A host calls ``agents.chat {agent_id, prompt, session_id?, model?}``. The
server picks the newest socket session bound to that agent and sends it the request
``agent.chat {session_id, prompt, model?}`` over its reverse channel
(:class:`~carnb.app.peercalls.PeerCalls`); the agent acks ``{accepted: true}`` and the host
gets ``{accepted: true, session_id}``. The agent then streams ``agent.chat.event {session_id,
kind, delta?}`` notifications (``token``, ``tool_call``, ``goal_evaluated``, ``done``, ``error``,
...), which the server relays to the host as ``agents.chat.event {session_id, agent_id, kind,
delta}``, until ``done`` or ``error``. The notebook's own session has no socket: its events are
kept and :meth:`ChatRelay.wait` returns them. Only the agent session a chat was sent to can
stream into it. When either side disconnects the chat ends (the host is sent ``error``).

This is what the official client's ``agent_loop.serve_chat`` (and ``main --serve``) waits for.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from carnb.app.pending import Pending
from carnb.config import CHAT_ACK_TIMEOUT_S, CHAT_EVENTS_KEPT
from carnb.errors import ChatRefused, Forbidden, InvalidParams, NotFound
from carnb.protocol.session import ClientSession

TERMINAL = frozenset({"done", "error"})


@dataclass
class Chat:
    chat_id: str
    agent_id: str
    host: ClientSession
    agent: ClientSession
    events: list[dict[str, Any]] = field(default_factory=list)


class ChatRelay:
    """Open chats by chat id (the wire calls it ``session_id``); runs on the server loop."""

    def __init__(self) -> None:
        self._chats: Pending[Chat] = Pending()

    async def start(
        self, host: ClientSession, targets: list[ClientSession], params: dict[str, Any]
    ) -> dict[str, Any]:
        agent_id = params.get("agent_id")
        prompt = params.get("prompt")
        if not isinstance(agent_id, str) or not agent_id:
            raise InvalidParams("agent_id is required and must be a string")
        if not isinstance(prompt, str):
            raise InvalidParams("prompt is required and must be a string")
        chat_id = params.get("session_id") or f"chat-{uuid.uuid4().hex[:12]}"
        if not isinstance(chat_id, str):
            raise InvalidParams("session_id must be a string")
        if chat_id in self._chats:
            raise InvalidParams(f"session_id {chat_id!r} is already an open chat")
        live = [t for t in targets if t.callbacks is not None and not t.closed]
        if not live:
            raise NotFound(
                f"agent {agent_id!r} is not attached: start its process (it must "
                "session.auth with its agent_id and serve agent.chat, e.g. agent_loop.serve_chat)"
            )
        agent = live[-1]
        self._chats.open(chat_id, lambda _ended: Chat(chat_id, agent_id, host, agent))
        request: dict[str, Any] = {"session_id": chat_id, "prompt": prompt}
        for key in ("model", "attachments", "goal", "context"):
            if params.get(key) is not None:
                request[key] = params[key]
        try:
            ack = await agent.callbacks.request("agent.chat", request, timeout=CHAT_ACK_TIMEOUT_S)
        except BaseException:
            self._chats.discard(chat_id)
            raise
        if isinstance(ack, dict) and ack.get("accepted") is False:
            self._chats.discard(chat_id)
            raise ChatRefused(f"agent {agent_id!r} did not accept the chat turn: {ack}")
        return {"accepted": True, "session_id": chat_id}

    def event(self, sender: ClientSession, params: dict[str, Any]) -> bool:
        """Relay one ``agent.chat.event`` of ``sender``; False if it belongs to no chat of it."""
        chat_id, kind = params.get("session_id"), params.get("kind")
        if not isinstance(chat_id, str) or not isinstance(kind, str):
            raise InvalidParams("agent.chat.event needs {session_id, kind, delta?}")
        chat = self._chats.state(chat_id)
        if chat is None or chat.agent is not sender:
            return False
        self._emit(chat, {"kind": kind, "delta": params.get("delta")} | _extra(params))
        return True

    async def approve(self, caller: ClientSession, params: dict[str, Any]) -> dict[str, Any]:
        """``agents.chat.approve``: pass the host's decision on an ``approval_pending`` event
        to the chat's agent (``agent.chat.approve``) and relay its ``{resolved}``."""
        chat_id, approval_id = params.get("session_id"), params.get("approval_id")
        if not isinstance(chat_id, str) or not chat_id:
            raise InvalidParams("session_id is required and must be a string")
        if not isinstance(approval_id, str) or not approval_id:
            raise InvalidParams("approval_id is required and must be a string")
        decision = params.get("decision", False)
        if not isinstance(decision, bool | str):
            raise InvalidParams("decision must be a boolean or a string")
        chat = self._chats.get(chat_id)
        if chat is None:
            raise NotFound(f"no open chat {chat_id}")
        if caller is chat.agent:
            raise Forbidden("forbidden: an agent may not approve its own parked action")
        ack = await chat.agent.callbacks.request(
            "agent.chat.approve",
            {"session_id": chat_id, "approval_id": approval_id, "decision": decision},
            timeout=CHAT_ACK_TIMEOUT_S,
        )
        resolved = isinstance(ack, dict) and ack.get("resolved") is True
        return {"resolved": resolved, "session_id": chat_id}

    def drop(self, session: ClientSession) -> None:
        """A session ended: its chats end; a host still there hears ``error``."""
        for chat in list(self._chats):
            if chat.agent is session:
                self._emit(chat, {"kind": "error", "delta": "the agent disconnected"})
            elif chat.host is session:
                self._chats.discard(chat.chat_id)

    async def wait(self, chat_id: str, timeout: float) -> list[dict[str, Any]]:
        """The events of a chat once it ended (for the notebook's socketless session)."""
        chat = self._chats.state(chat_id)
        if chat is None:
            raise NotFound(f"no open chat {chat_id}")
        try:
            await self._chats.wait(chat_id, timeout, keep_open=True)
        finally:
            if self._chats.answered(chat_id):
                self._chats.discard(chat_id)
        return chat.events

    def _emit(self, chat: Chat, event: dict[str, Any]) -> None:
        # The fields the server vouches for come last: an agent's extra keys never replace them.
        note = {**event, "session_id": chat.chat_id, "agent_id": chat.agent_id}
        notify = chat.host.notifier
        if notify is not None:
            notify("agents.chat.event", note)
        elif len(chat.events) < CHAT_EVENTS_KEPT:
            chat.events.append(note)
        if event["kind"] in TERMINAL:
            self._chats.resolve(chat.chat_id, None)
            if notify is not None:
                self._chats.discard(chat.chat_id)


def _extra(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in ("session_id", "kind", "delta")}
