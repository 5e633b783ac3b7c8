"""The in-kernel server under load, fuzzing and a secrets scan: a real ipykernel started through
jupyter_client runs ``%load_ext carnb``; external clients then drive the server it started while
cells run (one of them blocking the kernel in ``time.sleep``). Every iopub message the kernel
sends (outputs, ``%car server``, the status panel's widget state) is scanned for tokens."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.reliability.harness import REPO, AClient, add, mib, note
from tests.reliability.test_fuzz import (
    Frames,
    Fuzzer,
    Witness,
    _schema,
    failure,
    frames_repr,
    seeded,
)
from tests.reliability.test_security_secrets import leaks
from tests.reliability.workload import Tally, agent_session, plain_session

pytestmark = [pytest.mark.reliability, pytest.mark.kernel]

CONNECTIONS = 100


class Kernel:
    """A real ipykernel; every iopub message is kept (for the secrets scan)."""

    def __init__(self, home: Path) -> None:
        from jupyter_client.manager import start_new_kernel

        self.km, self.kc = start_new_kernel(
            kernel_name="python3",
            cwd=str(REPO),
            startup_timeout=60,
            env={**os.environ, "CARNB_HOME": str(home), "PYTHONPATH": str(REPO)},
        )
        self.iopub: list[dict[str, Any]] = []
        self.pid = int(self.km.provisioner.process.pid)  # type: ignore[union-attr]

    def execute(
        self, code: str, timeout: float = 120
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        msg_id = self.kc.execute(code)
        return self.wait(msg_id, timeout)

    def wait(
        self, msg_id: str, timeout: float = 120
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        outputs = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"cell {msg_id} did not finish within {timeout} s") from None
            self.iopub.append(msg)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
            outputs.append(msg)
        reply = self.kc.get_shell_msg(timeout=30)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=30)
        return reply["content"], outputs

    def text(self, outputs: list[dict[str, Any]]) -> str:
        parts = []
        for m in outputs:
            c = m["content"]
            parts.append(c.get("text", ""))
            parts.extend(str(v) for v in c.get("data", {}).values())
            parts.append("".join(c.get("traceback", [])))
        return "\n".join(parts)

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def start_ticker(k: Kernel, seconds: int) -> str:
    """Start a cell that sleeps 10 ms at a time for ``seconds`` and prints the longest gap it
    saw between ticks (a stalled kernel shows as a long gap); returns its message id once it
    runs."""
    ticker = k.kc.execute(
        f"import time\ngaps = []\nlast = time.perf_counter()\nend = last + {seconds}\n"
        "while last < end:\n    time.sleep(0.01)\n    now = time.perf_counter()\n"
        "    gaps.append(now - last)\n    last = now\n"
        "print('max gap ms', round(max(gaps) * 1000, 1), 'ticks', len(gaps))"
    )
    time.sleep(1)  # the ticker is running
    return str(ticker)


def ticker_max_gap(text: str) -> float:
    return float(text.split("max gap ms")[1].split()[0])


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kernel, dict[str, Any]]]:
    pytest.importorskip("ipykernel")
    home = tmp_path_factory.mktemp("kernel") / "home"
    k = Kernel(home)
    try:
        reply, out = k.execute("%load_ext carnb")
        how = "%load_ext carnb"
        if reply["status"] != "ok":  # fallback while the extension is unfinished (see report)
            how = "Runtime(Settings(home=...)).start() (fallback: %load_ext failed)"
            reply, out = k.execute(
                "from carnb.config import Settings\n"
                "from carnb.runtime import Runtime, set_current\n"
                f"rt = Runtime(Settings(home={str(home)!r})).start(); set_current(rt)"
            )
            assert reply["status"] == "ok", k.text(out)
        note("kernel: server started by", how)
        # the harness learns where to connect and reads the secrets from the private
        # connection file, so no cell output ever has to contain a token
        reply, out = k.execute(
            "import carnb, json\nrt = carnb.current()\nrt.register_agent('kagent')\n"
            "print(json.dumps({'url': rt.url, 'file': str(rt.connection_file)}))"
        )
        assert reply["status"] == "ok", k.text(out)
        where = json.loads(k.text(out).strip().splitlines()[-1])
        info = json.loads(Path(where["file"]).read_text())
        info["url"] = where["url"]
        yield k, info
    finally:
        k.close()


def test_in_kernel_server_under_load_while_a_cell_blocks(
    kernel: tuple[Kernel, dict[str, Any]],
    tmp_path: Path,
) -> None:
    k, info = kernel
    proc = psutil.Process(k.pid)
    rss_before = proc.memory_info().rss
    flag = tmp_path / "release"
    # a cell that blocks the kernel thread (time.sleep) until the load below is done
    sleeper = k.kc.execute(
        "import os, time\nt0 = time.time()\n"
        f"while not os.path.exists({str(flag)!r}) and time.time() - t0 < 120:\n"
        "    time.sleep(0.05)\n"
        f"print('released' if os.path.exists({str(flag)!r}) else 'gave up')"
    )

    async def main() -> Tally:
        tally = Tally()
        gate = asyncio.Semaphore(50)

        async def one(i: int) -> AClient:
            async with gate:
                c = await AClient.open(info["url"])
            if i % 5 == 0:
                await c.call(
                    "session.auth", {"token": info["agents"]["kagent"], "agent_id": "kagent"}
                )
                await agent_session(c, "kagent", f"k{i}", tally)
            else:
                await c.call("session.auth", {"token": info["token"]})
                await plain_session(c, f"k{i}", tally)
            tally.calls += 1
            return c

        clients = await asyncio.gather(*(one(i) for i in range(CONNECTIONS)))
        tally.check(all(c.ws.close_code is None for c in clients), "a connection was dropped")
        await asyncio.gather(*(c.close() for c in clients))
        return tally

    tally = asyncio.run(main())
    flag.touch()
    reply, out = k.wait(sleeper, timeout=150)
    assert reply["status"] == "ok" and "released" in k.text(out), k.text(out)  # blocked throughout
    assert tally.failures == [], tally.failures[:10]
    rss_after = proc.memory_info().rss
    add("kernel: connections", CONNECTIONS)
    add("kernel: calls made (checked)", tally.calls)
    note("kernel: kernel RSS MiB before/after load", f"{mib(rss_before)} / {mib(rss_after)}")


def test_in_kernel_server_fuzzed(kernel: tuple[Kernel, dict[str, Any]]) -> None:
    k, info = kernel
    host_frames = Frames(_schema(info["url"], info["host_token"]))
    witness = Witness(info["url"], info["token"])
    witness.start()
    fuzzer = Fuzzer(info["url"], info["token"])

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(host_frames.frame(), min_size=1, max_size=6))
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
    assert witness.failures == [], witness.failures[:10]
    assert fuzzer.internal_errors == [], fuzzer.internal_errors[:10]
    reply, out = k.execute("print(carnb.current().running)")
    assert reply["status"] == "ok" and "True" in k.text(out)
    add("kernel: frames fuzzed", fuzzer.frames)


def test_no_token_in_kernel_outputs_widget_state_or_car_server(
    kernel: tuple[Kernel, dict[str, Any]],
) -> None:
    k, info = kernel
    secrets = {
        "token": info["token"],
        "host_token": info["host_token"],
        **{f"agent:{a}": t for a, t in info["agents"].items()},
    }
    ext = k.execute("import carnb.kernel.extension as e; print(e.active() is not None)")
    if "True" not in k.text(ext[1]):
        pytest.skip("the kernel runs the Runtime fallback: no %car magics or panel to check")
    reply, out = k.execute("%car server")
    assert reply["status"] == "ok", k.text(out)
    assert info["url"] in k.text(out)
    reply, out = k.execute("%car status")  # the live panel: ipywidgets state over comm messages
    assert reply["status"] == "ok", k.text(out)
    # some traffic so the panel has sessions, agents and runs to show
    c = threading.Thread(target=lambda: asyncio.run(_touch(info)))
    c.start()
    c.join(30)
    reply, out = k.execute("%car status")
    assert reply["status"] == "ok"
    widget_msgs = [m for m in k.iopub if m["msg_type"].startswith("comm_")]
    assert widget_msgs, "the panel sent no widget state"
    assert leaks(json.dumps(k.iopub, default=str), secrets) == [], "a token reached the notebook"
    # control: asked explicitly, %car server does show the token (so the scan can find one)
    reply, out = k.execute("%car server --show-tokens")
    assert leaks(k.text(out), secrets), "--show-tokens showed no token"
    add("kernel: iopub messages scanned for secrets", len(k.iopub))


async def _touch(info: dict[str, Any]) -> None:
    c = await AClient.open(info["url"])
    await c.call("session.auth", {"token": info["agents"]["kagent"], "agent_id": "kagent"})
    run = await c.call("runs.start", {"intent": "panel"})
    await c.call("runs.record_turns", {"run_id": run["run_id"], "turns": [{"prompt": "x"}]})
    await c.call("memory.add_fact", {"subject": "panel", "body": "fact"})
    await c.close()


def test_unauthenticated_big_frames_do_not_freeze_the_kernel(
    kernel: tuple[Kernel, dict[str, Any]],
) -> None:
    """Frames before authentication, in a real kernel: while peers without a token send
    16 MiB frames to the in-kernel server, a cell that ticks every 10 ms never waits more than
    200 ms."""
    from tests.reliability.test_hardening import (
        nested_frame_text,
        send_big_frame_unauthenticated,
    )

    k, info = kernel
    port = int(info["url"].rsplit(":", 1)[1].strip("/"))
    payload = nested_frame_text(16 * 1024 * 1024 - 64).encode()
    ticker = start_ticker(k, seconds=6)

    def attack() -> list[int | None]:
        codes = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3:
            codes.append(send_big_frame_unauthenticated(port, payload))
        return codes

    threads: list[threading.Thread] = []
    results: list[list[int | None]] = []
    for _ in range(3):
        t = threading.Thread(target=lambda: results.append(attack()))
        t.start()
        threads.append(t)
    for t in threads:
        t.join(60)
    reply, out = k.wait(ticker, timeout=60)
    text = k.text(out)
    assert reply["status"] == "ok", text
    codes = [c for r in results for c in r]
    assert codes and set(codes) == {1009}, codes[:10]
    max_gap = ticker_max_gap(text)
    note("kernel: max cell tick gap ms under unauthenticated 16 MiB frames", max_gap)
    add("kernel: unauthenticated 16 MiB frames refused", len(codes))
    assert max_gap < 200, text


def test_hostile_memory_queries_do_not_freeze_the_kernel(
    kernel: tuple[Kernel, dict[str, Any]],
) -> None:
    """Hostile memory content, in a real kernel: a client plants a fact of 32 very long words
    (1 MiB) and big facts in the kernel's server, then queries new words (each such query once
    froze the server and the kernel ~30 s); a cell that ticks every 10 ms never waits more than
    200 ms."""
    import random

    from tests.reliability.test_memory_hostile import BIG_PENDING, BODY_BYTES, planted_body

    k, info = kernel
    rng = random.Random(1)
    bodies = [planted_body(rng)] + [
        (f"marker{i} " + planted_body(rng))[:BODY_BYTES] for i in range(BIG_PENDING)
    ]
    ticker = start_ticker(k, seconds=8)

    async def attack() -> list[float]:
        c = await AClient.open(info["url"])
        await c.call("session.auth", {"token": info["token"]})
        await c.call("memory.add_fact", {"subject": "scraped", "body": bodies[0]}, timeout=60)
        for i, body in enumerate(bodies[1:]):
            await c.call("memory.add_fact", {"subject": f"big{i}", "body": body}, timeout=60)
        took = []
        for i in range(8):
            t0 = time.monotonic()
            query = f"novel{chr(97 + i)}word other{chr(97 + i)}thing marker3"
            found = await c.call("memory.query", {"query": query}, timeout=120)
            took.append(time.monotonic() - t0)
            assert found and found[0]["subject"] == "big3"
        await c.close()
        return took

    took = asyncio.run(attack())
    reply, out = k.wait(ticker, timeout=60)
    text = k.text(out)
    assert reply["status"] == "ok", text
    max_gap = ticker_max_gap(text)
    note("kernel: max cell tick gap ms under hostile memory queries", max_gap)
    note("kernel: slowest hostile query ms", round(max(took) * 1000, 1))
    assert max(took) < 2.0, took
    assert max_gap < 200, text


def test_the_notebooks_infer_is_never_answered_by_a_runner_it_did_not_choose(
    kernel: tuple[Kernel, dict[str, Any]],
) -> None:
    """An agent that registers as a runner cannot make itself the default, so the notebook's
    own ``infer`` (prompt and memory context) goes to the notebook's model, or fails at once when
    the notebook has none; it never reaches the runner."""
    from tests.reliability.test_runners import authed

    k, info = kernel

    def notebook_infer() -> str:
        reply, out = k.execute(
            "try:\n    r = carnb.current().infer({'prompt': 'my secret'}, timeout=10)\n"
            "    print('ANSWER', r['reply']['model_used'], r['reply']['text'])\n"
            "except Exception as exc:\n    print('ERROR', exc)"
        )
        assert reply["status"] == "ok", k.text(out)
        # the panel shown by an earlier test may send widget updates into this cell's output
        lines = k.text(out).splitlines()
        return next(line for line in lines if line.startswith(("ANSWER", "ERROR")))

    async def attack() -> tuple[list[str], list[dict[str, Any]]]:
        evil = await authed(info["url"], token=info["agents"]["kagent"], agent_id="kagent")
        refused = []
        try:
            await evil.call("inference.register_runner", {"models": ["evil"], "default": True})
        except Exception as exc:
            refused.append(str(exc))
        await evil.call("inference.register_runner", {"models": ["evil"]})
        seen = [await asyncio.to_thread(notebook_infer)]
        k.execute("carnb.model(lambda request: 'mine', name='nb')")
        seen.append(await asyncio.to_thread(notebook_infer))
        await asyncio.sleep(0.1)
        invokes = [n for n in evil.notifications if n["method"] == "inference.runner.invoke"]
        await evil.close()
        k.execute("carnb.current().unregister_model('nb')")
        return refused + seen, invokes

    seen, invokes = asyncio.run(attack())
    assert "only the host decides" in seen[0], seen
    assert seen[1].startswith("ERROR") and "no default model" in seen[1], seen
    assert seen[2] == "ANSWER nb mine", seen
    assert invokes == []


def test_a_runner_flooding_its_stream_does_not_freeze_the_kernel(
    kernel: tuple[Kernel, dict[str, Any]],
) -> None:
    """A runner that streams megabytes of tool arguments into one call is cut off at the
    per-call cap as the data arrives; a cell that ticks every 10 ms never waits over 200 ms."""
    from tests.reliability.test_runners import authed, next_invoke

    k, info = kernel
    chunk = "y" * (512 * 1024)
    ticker = start_ticker(k, seconds=6)

    async def attack() -> int:
        runner = await authed(info["url"], token=info["token"])
        await runner.call("inference.register_runner", {"models": ["flood"]})
        caller = await authed(info["url"], token=info["token"])
        refused = 0
        end = time.monotonic() + 3
        while time.monotonic() < end:
            pending = asyncio.create_task(
                caller.request("infer", {"prompt": "x", "model": "flood"})
            )
            call_id = (await next_invoke(runner))["call_id"]
            await runner.call(
                "inference.runner.event",
                {"call_id": call_id, "event": {"type": "tool_start", "name": "t", "index": 0}},
            )
            for _ in range(8):
                reply = await runner.request(
                    "inference.runner.event",
                    {
                        "call_id": call_id,
                        "event": {"type": "tool_delta", "index": 0, "data": chunk},
                    },
                )
                if "error" in reply:
                    refused += 1
                    break
            assert "error" in await pending
        await runner.close()
        await caller.close()
        return refused

    refused = asyncio.run(attack())
    reply, out = k.wait(ticker, timeout=60)
    text = k.text(out)
    assert reply["status"] == "ok", text
    assert refused > 0
    max_gap = ticker_max_gap(text)
    note("kernel: max cell tick gap ms while a runner floods its stream", max_gap)
    add("kernel: runner calls cut at the stream cap", refused)
    assert max_gap < 200, text


def test_big_frames_after_auth_do_not_freeze_the_kernel(
    kernel: tuple[Kernel, dict[str, Any]],
) -> None:
    """Authenticated peers send the costliest frames the limits allow (nested arrays at the
    value limit, a string at the frame cap, a frame over the value limit) to the in-kernel
    server; a cell that ticks every 10 ms never waits more than 200 ms."""
    from tests.reliability.test_big_frames import costliest_frames, send_frame
    from tests.reliability.test_runners import authed

    k, info = kernel
    frames = list(costliest_frames().values())
    ticker = start_ticker(k, seconds=6)

    async def attack() -> int:
        peers = [await authed(info["url"], token=info["token"]) for _ in range(2)]
        sent = 0

        async def flood(c: AClient) -> None:
            nonlocal sent
            end = time.monotonic() + 3
            while time.monotonic() < end:
                for text in frames:
                    await send_frame(c, text)
                    sent += 1
                    await asyncio.sleep(0.01)

        await asyncio.gather(*(flood(c) for c in peers))
        for c in peers:
            await c.close()
        return sent

    sent = asyncio.run(attack())
    reply, out = k.wait(ticker, timeout=60)
    text = k.text(out)
    assert reply["status"] == "ok", text
    max_gap = ticker_max_gap(text)
    note("kernel: max cell tick gap ms under authenticated big frames", max_gap)
    add("kernel: authenticated big frames sent", sent)
    assert max_gap < 200, text
