"""Fuzzing a live `python -m carnb serve` over real sockets (hypothesis).

Frames: random JSON, random methods with random params (shaped by ``server.schema``), deep
nesting, huge strings, NaN/Infinity, invalid UTF-8, binary frames and raw frame bytes, while a
witness connection keeps making valid calls. Properties: the server never crashes or hangs;
every request gets exactly one reply with its id, a result or a well-formed error; nothing is
answered that was not asked; the witness's answers stay right.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from carnb.config import MAX_FRAME_BYTES, PARSE_OFF_LOOP_CHARS
from carnb.protocol.jsonrpc import MAX_DEPTH, MAX_FRAME_VALUES, frame_values
from tests.reliability.harness import add, masked_frame, note, raw_upgrade, well_formed_error

pytestmark = pytest.mark.reliability

# Reproducible by default: the same frames on every run. CARNB_FUZZ_SEED picks other frames
# (`make fuzz` draws a random seed and runs many more examples); every run reports its seed in
# the reliability figures, and a failure names it with the frames that caused it.
SEED = int(os.environ.get("CARNB_FUZZ_SEED", "20261208"))
EXAMPLES = int(os.environ.get("CARNB_FUZZ_EXAMPLES", "600"))  # batches of 1..6 frames each


def seeded(fuzz: Any) -> Any:
    """Run the hypothesis test ``fuzz`` with the fuzz seed, reporting it."""
    note("fuzz: seed (CARNB_FUZZ_SEED)", SEED)
    return seed(SEED)(fuzz)


def failure(exc: BaseException, frames: str) -> AssertionError:
    return AssertionError(f"{exc}\nseed: CARNB_FUZZ_SEED={SEED}\nframes: {frames}")


# -- the model: what the server must answer to one text frame --------------------------------
def _depth(value: Any) -> int:
    depth, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            depth = max(depth, d)
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return depth


def _reject(token: str) -> Any:
    raise ValueError(token)


def _finite(text: str) -> float:
    f = float(text)
    if math.isinf(f):
        raise ValueError(text)
    return f


def expected_reply(text: str) -> tuple[bool, Any]:
    """(answered?, reply id) per docs/protocol.md: strict JSON (no NaN/Infinity, nesting at most
    MAX_DEPTH); a well-formed notification or response object (``result`` or ``error``, no
    ``method``) is never answered; everything else gets exactly one
    reply, carrying the request's id when it has a valid one. A frame over 64 KiB that may hold
    more than MAX_FRAME_VALUES values is refused before it is decoded (id null)."""
    if len(text) > PARSE_OFF_LOOP_CHARS and frame_values(text) > MAX_FRAME_VALUES:
        return True, None
    try:
        obj = json.loads(text, parse_constant=_reject, parse_float=_finite)
    except (ValueError, RecursionError):
        return True, None
    if _depth(obj) > MAX_DEPTH or not isinstance(obj, dict):
        return True, None
    raw_id = obj.get("id")
    valid_id = raw_id is None or (
        isinstance(raw_id, (int, float, str)) and not isinstance(raw_id, bool)
    )
    if "id" in obj:
        is_response = obj.get("method") is None and ("result" in obj) != ("error" in obj)
        if valid_id and is_response:
            return False, None  # the peer answering a server request: routed or dropped
        return True, raw_id if valid_id else None
    method = obj.get("method")
    if isinstance(method, str) and method and obj.get("jsonrpc", "2.0") == "2.0":
        return False, None  # a notification
    return True, None


# -- strategies ---------------------------------------------------------------------------------
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=25,
)
huge_text = st.integers(100_000, 3_000_000).map(lambda n: "ü" * (n // 2) + "x" * (n - n // 2))


def nested(depth: int, kind: str) -> Any:
    v: Any = "leaf"
    for _ in range(depth):
        v = [v] if kind == "list" else {"a": v}
    return v


deep_values = st.builds(
    nested,
    st.integers(MAX_DEPTH - 5, MAX_DEPTH + 5) | st.integers(1, 400),
    st.sampled_from(["list", "dict"]),
)


def deep_text(depth: int, kind: str) -> str:
    """A state.set frame nesting ``depth`` levels, built as text (too deep for json.dumps)."""
    head, tail = ("[", "]") if kind == "list" else ('{"a":', "}")
    value = head * depth + '"leaf"' + tail * depth
    return (
        '{"jsonrpc":"2.0","id":"deep","method":"state.set","params":{"key":"d","value":'
        + value
        + "}}"
    )


def value_for(hint: str) -> st.SearchStrategy[Any]:
    if hint.startswith("string[]"):
        typed: st.SearchStrategy[Any] = st.lists(st.text(max_size=20), max_size=5)
    elif hint.startswith("string") or hint.startswith("{operations"):
        typed = st.text(max_size=60) | st.sampled_from(
            ["", "..", "../x.json", "/etc/passwd", "a/b.json"]
        )
    elif hint.startswith("integer"):
        typed = st.integers(-(2**40), 2**40) | st.sampled_from([0, 3, -1, 2**63])
    elif hint.startswith("number"):
        typed = st.floats(allow_nan=True, allow_infinity=True) | st.integers()
    elif hint.startswith("object[]"):
        typed = st.lists(
            st.dictionaries(
                st.sampled_from(["prompt", "tool", "output", "x"]), json_values, max_size=3
            ),
            max_size=4,
        )
    else:
        typed = json_values
    return typed | json_values | deep_values | huge_text


class Frames:
    """Strategies over the live server's own method list and param names."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.params = {m["method"]: m["params"] for m in schema["methods"]}
        self.ids = iter(range(10**9))
        names = sorted(self.params)
        self.method = (
            st.sampled_from(names)
            | st.text(max_size=20)
            | st.sampled_from(
                ["", "session.auth", "state", "memory.", "runs.start ", "__class__", "host.events"]
            )
        )

    def params_for(self, method: str) -> st.SearchStrategy[Any]:
        hints = self.params.get(method, {})
        if not hints:
            return json_values
        fields = {name: value_for(h) for name, h in hints.items()}
        return st.fixed_dictionaries({}, optional=fields) | json_values

    def request(self, notification: bool) -> st.SearchStrategy[str]:
        @st.composite
        def build(draw: Any) -> str:
            method = draw(self.method)
            msg: dict[str, Any] = {"jsonrpc": draw(st.sampled_from(["2.0"] * 8 + ["1.0", None]))}
            if msg["jsonrpc"] is None:
                del msg["jsonrpc"]
            if not notification:
                msg["id"] = draw(st.sampled_from(["int", "str", "float", "weird"]))
                if msg["id"] == "int":
                    msg["id"] = next(self.ids)
                elif msg["id"] == "str":
                    msg["id"] = f"fz-{next(self.ids)}"
                elif msg["id"] == "float":
                    msg["id"] = next(self.ids) + 0.5
                else:
                    msg["id"] = draw(json_values)
            msg["method"] = method
            if draw(st.booleans()) or method in self.params:
                msg["params"] = draw(self.params_for(method))
            return json.dumps(
                msg
            )  # NaN/Infinity survive as JS literals: the server must refuse them

        return build()

    def frame(self) -> st.SearchStrategy[tuple[str, Any]]:
        text = st.one_of(
            self.request(False),
            self.request(False),
            self.request(False),
            self.request(True),
            json_values.map(json.dumps),
            st.text(max_size=200),
            st.builds(
                deep_text,
                st.integers(MAX_DEPTH - 5, MAX_DEPTH + 5) | st.integers(1, 5000),
                st.sampled_from(["list", "dict"]),
            ),
            st.integers(1, 100_000).map(lambda n: "[" * n),
        )
        text_frame = text.map(lambda t: ("text", t))
        return (
            st.one_of(  # roughly 1 in 6 binary, 1 in 12 invalid UTF-8 (which ends the connection)
                *([text_frame] * 10),
                st.binary(max_size=300).map(lambda b: ("binary", b)),
                st.binary(max_size=300).map(lambda b: ("binary", b)),
                st.binary(min_size=1, max_size=50).map(
                    lambda b: ("bad-utf8", b'{"x":"' + b"\xff" + b + b'"}')
                ),
            )
        )


def open_ws(url: str) -> ClientConnection:
    # no client pings: they would draw from `random` while hypothesis generates data
    return connect(url, open_timeout=10, max_size=None, ping_interval=None).__enter__()


def frames_repr(fs: list[tuple[str, Any]]) -> str:
    return repr([(k, d[:300] if len(d) > 300 else d) for k, d in fs])


# -- a witness that keeps making valid calls ------------------------------------------------------
class Witness(threading.Thread):
    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.ws = open_ws(url)
        self.calls = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self._call("session.auth", {"token": token})

    def _call(self, method: str, params: Any = None) -> Any:
        self.calls += 1
        req = {"jsonrpc": "2.0", "id": self.calls, "method": method, "params": params}
        self.ws.send(json.dumps(req))
        reply = json.loads(self.ws.recv(timeout=15))
        if reply.get("id") != self.calls or "result" not in reply:
            self.failures.append(f"{method}: {reply}")
            return None
        return reply["result"]

    def run(self) -> None:
        i, facts = 0, 0
        try:
            while not self.stop.is_set():
                value = {"i": i, "s": "ü€" * (i % 7), "l": [i, None, True]}
                if self._call("state.set", {"key": f"w{i % 50}", "value": value}) != "ok":
                    self.failures.append(f"state.set {i}")
                got = self._call("state.get", {"key": f"w{i % 50}"})
                if got != value:
                    self.failures.append(f"state.get {i} -> {got!r}")
                if i % 5 == 0:
                    facts += 1
                    n = self._call(
                        "memory.add_fact", {"subject": f"witness{i}", "body": f"fact {i}"}
                    )
                    if n != facts:
                        self.failures.append(f"add_fact {i} -> {n} (want {facts})")
                    hits = self._call("memory.query", {"query": f"witness{i}", "k": 1})
                    if not hits or hits[0]["subject"] != f"witness{i}":
                        self.failures.append(f"query {i} -> {hits!r}")
                i += 1
        except Exception as exc:  # a dropped or silent witness is exactly what this test catches
            self.failures.append(f"witness stopped: {type(exc).__name__}: {exc}")
        finally:
            self.ws.close()


# -- the fuzzing connection ----------------------------------------------------------------------
class Fuzzer:
    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.ws: ClientConnection | None = None
        self.sentinels = 0
        self.frames = 0
        self.internal_errors: list[str] = []
        self.reconnects = 0
        self.connect()

    def connect(self) -> None:
        self.ws = open_ws(self.url)
        self.ws.send(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": "auth",
                    "method": "session.auth",
                    "params": {"token": self.token},
                }
            )
        )
        assert json.loads(self.ws.recv(timeout=10))["result"]["ok"] is True

    def check_reply(self, msg: dict[str, Any]) -> None:
        assert msg.get("jsonrpc") == "2.0", msg
        assert ("result" in msg) != ("error" in msg), msg
        if "error" in msg:
            assert well_formed_error(msg["error"]), msg
            if msg["error"]["message"].startswith("internal error"):
                self.internal_errors.append(msg["error"]["message"][:300])

    def exchange(self, frames: list[tuple[str, Any]]) -> None:
        assert self.ws is not None
        if self.ws.close_code is not None:  # a previous failing example left it closed
            self.connect()
        expected: Counter[str] = Counter()
        for kind, data in frames:
            self.frames += 1
            too_big = kind != "bad-utf8" and len(data.encode() if isinstance(data, str) else data)
            too_big = bool(too_big) and too_big > MAX_FRAME_BYTES
            if kind == "bad-utf8" or too_big:
                # Invalid UTF-8 in a text frame: RFC 6455 says fail the connection (1007); a
                # frame over the cap is refused the same way (1009). Replies already on their
                # way still arrive well-formed; replies to requests still running may be lost
                # with the connection.
                self.ws.send(data, text=kind != "binary")
                got: Counter[str] = Counter()
                with pytest.raises(ConnectionClosed):
                    while True:
                        msg = json.loads(self.ws.recv(timeout=10))
                        if "method" in msg and "id" not in msg:
                            continue
                        self.check_reply(msg)
                        got[json.dumps(msg.get("id"))] += 1
                assert self.ws.close_code == (1009 if too_big else 1007), self.ws.close_code
                assert not got - expected, f"unasked replies {got - expected}"
                expected = Counter()
                self.reconnects += 1
                self.connect()
                continue
            self.ws.send(data)
            if kind == "binary":
                expected[json.dumps(None)] += 1
                continue
            answered, id_ = expected_reply(data)
            if answered:
                expected[json.dumps(id_)] += 1
        self.sentinels += 1
        sentinel = f"sentinel-{self.sentinels}"
        self.ws.send(json.dumps({"jsonrpc": "2.0", "id": sentinel, "method": "state.keys"}))
        got = Counter()
        seen_sentinel = False
        deadline = time.monotonic() + 30
        while not seen_sentinel or sum(got.values()) < sum(expected.values()):
            left = deadline - time.monotonic()
            assert left > 0, f"no full answer within 30 s: want {expected}, got {got}"
            msg = json.loads(self.ws.recv(timeout=left))
            if "method" in msg and "id" not in msg:
                continue  # a server notification (runs.trace.event, ...)
            self.check_reply(msg)
            if msg.get("id") == sentinel:
                assert isinstance(msg.get("result"), list), msg
                seen_sentinel = True
                continue
            got[json.dumps(msg.get("id"))] += 1
        assert got == expected, f"replies by id: want {expected}, got {got}"


@pytest.fixture
def fuzz_server(start_server: Any) -> Any:
    return start_server("--agent", "fz")


def _schema(url: str, host_token: str) -> dict[str, Any]:
    with connect(url, open_timeout=10) as ws:
        ws.send(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "session.auth",
                    "params": {"host_token": host_token},
                }
            )
        )
        ws.recv(timeout=10)
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "server.schema"}))
        return dict(json.loads(ws.recv(timeout=10))["result"])


def test_fuzzed_frames_are_all_answered_and_the_witness_stays_right(fuzz_server: Any) -> None:
    srv = fuzz_server
    frames = Frames(_schema(srv.url, srv.host_token))
    witness = Witness(srv.url, srv.token)
    witness.start()
    fuzzer = Fuzzer(srv.url, srv.token)

    # No shrinking: every example talks to one live server, so a failure is reported with the
    # frames that caused it (shrinking replays against changed server state would take minutes).
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(frames.frame(), min_size=1, max_size=6))
    def batch(fs: list[tuple[str, Any]]) -> None:
        try:
            fuzzer.exchange(fs)
        except BaseException as exc:
            raise failure(exc, frames_repr(fs)) from exc

    try:
        seeded(batch)()
    finally:
        witness.stop.set()
        witness.join(30)
    add("fuzz: frames fuzzed (text/binary/bad UTF-8)", fuzzer.frames)
    add("fuzz: witness calls checked", witness.calls)
    add("fuzz: reconnects after 1007 or 1009", fuzzer.reconnects)
    assert srv.alive()
    assert witness.failures == [], witness.failures[:10]
    assert witness.calls > 100
    assert fuzzer.internal_errors == [], Counter(fuzzer.internal_errors).most_common(10)
    assert "Traceback" not in srv.log_text(), srv.log_text()[-4000:]


def test_fuzzed_raw_frame_bytes_never_hurt_the_server(fuzz_server: Any) -> None:
    """Arbitrary bytes after the upgrade (bad opcodes, unmasked frames, lying lengths, control
    frames): the server closes or ignores that connection; everyone else is served."""
    srv = fuzz_server
    witness = Witness(srv.url, srv.token)
    witness.start()
    count = {"streams": 0}

    @settings(
        max_examples=120,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        st.lists(
            st.binary(max_size=64)
            | st.builds(masked_frame, st.binary(max_size=200), st.integers(0, 15), st.booleans()),
            min_size=1,
            max_size=5,
        )
    )
    def stream(chunks: list[bytes]) -> None:
        count["streams"] += 1
        s = raw_upgrade(srv.port)
        try:
            for chunk in chunks:
                try:
                    s.sendall(chunk)
                except OSError:
                    break  # the server already closed this connection: fine
        except BaseException as exc:
            raise failure(exc, repr(chunks)[:4000]) from exc
        finally:
            s.close()

    try:
        seeded(stream)()
        # a well-behaved connection after all that is served normally
        with connect(srv.url, open_timeout=10) as ws:
            ws.send(
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "session.auth",
                        "params": {"token": srv.token},
                    }
                )
            )
            assert json.loads(ws.recv(timeout=10))["result"]["ok"] is True
    finally:
        witness.stop.set()
        witness.join(30)
    add("fuzz: raw byte streams", count["streams"])
    assert srv.alive()
    assert witness.failures == [], witness.failures[:10]
    assert "Traceback" not in srv.log_text(), srv.log_text()[-4000:]


def test_fragmented_and_control_frames_are_handled(fuzz_server: Any) -> None:
    """A message split over continuation frames is reassembled and answered; a ping is ponged;
    a frame too big for the cap closes that connection with 1009 (others unaffected)."""
    srv = fuzz_server
    s = raw_upgrade(srv.port)
    s.settimeout(10)
    try:
        auth = json.dumps(
            {"jsonrpc": "2.0", "id": 7, "method": "session.auth", "params": {"token": srv.token}}
        ).encode()
        s.sendall(
            masked_frame(auth[:10], opcode=0x1, fin=False)
            + masked_frame(b"x", opcode=0x9)  # a ping between fragments
            + masked_frame(auth[10:], opcode=0x0, fin=True)
        )
        data = b""
        while b'"id":7' not in data:
            chunk = s.recv(65536)
            assert chunk, "server closed the connection"
            data += chunk
        assert b"\x8a\x01x" in data  # the pong carries the ping's payload
        assert b'"ok":true' in data
    finally:
        s.close()
    add("fuzz: frames fuzzed (text/binary/bad UTF-8)", 3)
    # a lying length over the 16 MiB cap: closed with 1009 before any payload is read
    s = raw_upgrade(srv.port)
    s.settimeout(10)
    try:
        s.sendall(bytes([0x81, 0x80 | 127]) + (64 * 1024 * 1024).to_bytes(8, "big") + b"abcd")
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
        assert data[:1] == b"\x88" and int.from_bytes(data[2:4], "big") == 1009, data[:20]
    finally:
        s.close()
    assert srv.alive()
