"""Browser bench: cold vs warm ``browser.run`` on carnb's pool, a second session's first call,
and the official ``car-runtime`` client's own browser on the same page as the peer.

    .venv/bin/python bench/bench_browser.py [--quick]

The page is served by a separate process (so the server does not share our GIL) on 127.0.0.1.
The script measured everywhere is ``navigate`` to that page + ``observe``.
* cold: a new BrowserPool per sample (driver start + Chromium launch + context + script); the
  very first sample in the process also imports Playwright and is reported on its own.
* warm: the same slot again and again.
* second session: a new slot while Chromium runs (with and without the pool's spare context).
* peer: ``CarRuntime().browser_run(script_json)`` in its own process. As root Chromium needs
  --no-sandbox, so the peer runs as ``nobody`` (``runuser``) with a throwaway HOME.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import ROOT, median, pct, save, table  # noqa: E402

sys.path.insert(0, str(ROOT))

PAGE = """<!doctype html><html><head><title>Bench page</title></head><body>
<nav><a href="/">Home</a> <a href="/docs">Docs</a> <a href="/blog">Blog</a>
<a href="/about">About</a> <a href="/contact">Contact</a></nav>
<h1>Benchmark page</h1>
<p>A small page with some text, a few links and a form, like a typical local app page.</p>
<p>Second paragraph with <b>bold</b> and <i>italic</i> words in it.</p>
<form action="/search"><label for="q">Query</label><input id="q" name="q">
<input type="password" aria-label="Password"><button>Search</button></form>
<ul><li>First item</li><li>Second item</li><li>Third item</li></ul>
</body></html>"""

SERVER = textwrap.dedent("""
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    BODY = sys.stdin.read().encode()
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        def log_message(self, *a):
            pass
    class Server(ThreadingHTTPServer):
        daemon_threads = True
        def handle_error(self, request, client_address):
            pass  # Chromium drops idle keep-alive sockets; not a bench failure
    srv = Server(("127.0.0.1", 0), H)
    print(srv.server_port, flush=True)
    srv.serve_forever()
""")

PEER = textwrap.dedent("""
    import json, statistics, sys, time
    from car_runtime import CarRuntime
    url, warm_n = sys.argv[1], int(sys.argv[2])
    script = json.dumps({"operations": [{"op": "navigate", "url": url}, {"op": "observe"}]})
    rt = CarRuntime()
    t = time.perf_counter(); out = json.loads(rt.browser_run(script))
    first = time.perf_counter() - t
    ok = all(s["status"] == "ok" for s in out["steps"])
    warm = []
    for _ in range(warm_n):
        t = time.perf_counter(); rt.browser_run(script); warm.append(time.perf_counter() - t)
    rt.browser_close()
    print(json.dumps({"first_s": first, "warm_s": warm, "ok": ok,
                      "element_count": out["steps"][-1]["data"].get("element_count")}))
""")


def script_for(url: str) -> dict[str, Any]:
    return {"operations": [{"op": "navigate", "url": url}, {"op": "observe"}]}


def check(result: dict[str, Any]) -> None:
    bad = [s for s in result["steps"] if s["status"] != "ok"]
    if bad:
        raise SystemExit(f"bench script failed: {bad[0]['error']}")


async def timed(slot: Any, url: str, **kw: Any) -> float:
    t = time.perf_counter()
    result = await slot.run(script_for(url), **kw)
    elapsed = time.perf_counter() - t
    check(result)
    return elapsed


async def measure_carnb(url: str, cold_n: int, warm_n: int, second_n: int) -> dict[str, Any]:
    t = time.perf_counter()
    from carnb.browser import BrowserPool  # noqa: F401  (import cost is part of the first cold)

    first_pool = BrowserPool()
    first_slot = first_pool.slot("first")
    await first_slot.run(script_for(url))
    first_cold = time.perf_counter() - t
    await first_pool.close()

    cold = []
    for _ in range(cold_n):
        pool = BrowserPool()
        cold.append(await timed(pool.slot("cold"), url))
        await pool.close()

    pool = BrowserPool()
    slot = pool.slot("warm")
    await timed(slot, url)
    version = pool.version
    await asyncio.sleep(1.0)  # let the spare context settle before timing warm calls
    warm = [await timed(slot, url) for _ in range(warm_n)]
    second = []
    for i in range(second_n):
        await asyncio.sleep(0.5)  # sessions do not arrive back to back; the spare is ready
        second.append(await timed(pool.slot(f"s{i}"), url))
    await pool.close()

    nospare_pool = BrowserPool(spare_context=False)
    await timed(nospare_pool.slot("warm"), url)
    second_nospare = []
    for i in range(second_n):
        await asyncio.sleep(0.2)
        second_nospare.append(await timed(nospare_pool.slot(f"n{i}"), url))
    await nospare_pool.close()
    return {
        "chromium_version": version,
        "first_cold_in_process_s": first_cold,
        "cold_s": cold,
        "warm_s": warm,
        "second_session_s": second,
        "second_session_no_spare_s": second_nospare,
    }


def peer_command(tmp: Path, url: str, warm_n: int) -> tuple[list[str], dict[str, str]]:
    """How to run the peer: as `nobody` when we are root (Chromium refuses root + sandbox)."""
    code = tmp / "peer.py"
    code.write_text(PEER)
    home = tmp / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CAR_NO_VERSION_WARNING": "1",
    }
    venv_python = ROOT / ".venv" / "bin" / "python"
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        return [str(venv_python), str(code), url, str(warm_n)], env
    os.chmod(tmp, 0o755)
    os.chmod(code, 0o644)
    shutil.chown(home, "nobody")
    runuser = ["runuser", "-u", "nobody", "--"]
    # The venv's interpreter may live where nobody cannot reach (e.g. pyenv under /root);
    # then use the system python of the same version with the venv's site-packages.
    python = str(venv_python)
    probe = subprocess.run([*runuser, python, "-c", "import car_runtime"], capture_output=True)
    if probe.returncode != 0:
        site = next((ROOT / ".venv" / "lib").glob("python3*/site-packages"))
        python = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
        env["PYTHONPATH"] = str(site)
    return [
        *runuser,
        "env",
        *[f"{k}={v}" for k, v in env.items()],
        python,
        str(code),
        url,
        str(warm_n),
    ], env


def measure_peer(url: str, runs: int, warm_n: int) -> dict[str, Any]:
    firsts: list[float] = []
    warm: list[float] = []
    with tempfile.TemporaryDirectory(prefix="carnb-peer-") as tmp_name:
        for i in range(runs):
            tmp = Path(tmp_name) / str(i)
            tmp.mkdir()
            os.chmod(tmp_name, 0o755)
            cmd, env = peer_command(tmp, url, warm_n if i == 0 else 0)
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=120, env={**os.environ, **env}
            )
            if proc.returncode != 0:
                return {"error": (proc.stderr or proc.stdout).strip()[-500:]}
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            if not out["ok"]:
                return {"error": "peer script had an error step"}
            firsts.append(out["first_s"])
            warm += out["warm_s"]
    return {"first_s": firsts, "warm_s": warm}


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    cold_n, warm_n, second_n, peer_runs, peer_warm = (
        (2, 15, 3, 1, 10) if args.quick else (5, 50, 5, 3, 50)
    )

    load_before = os.getloadavg()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(PAGE)
        server.stdin.close()
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}/page"
        ours = asyncio.run(measure_carnb(url, cold_n, warm_n, second_n))
        peer = measure_peer(url, peer_runs, peer_warm)
    finally:
        server.kill()
        server.wait()

    ms = 1000.0
    cold = median(ours["cold_s"]) * ms
    warm = median(ours["warm_s"]) * ms
    second = median(ours["second_session_s"]) * ms
    second_nospare = median(ours["second_session_no_spare_s"]) * ms
    rows: list[tuple[str, str, str, bool | None]] = [
        (
            f"cold first call: new pool, launch + navigate + observe (median of {cold_n})",
            f"{cold:.0f} ms",
            "<= 1500 ms",
            cold <= 1500,
        ),
        (
            "cold first call in a fresh process, incl. importing Playwright",
            f"{ours['first_cold_in_process_s'] * ms:.0f} ms",
            "",
            None,
        ),
        (f"warm navigate + observe (median of {warm_n})", f"{warm:.1f} ms", "<= 60 ms", warm <= 60),
        ("warm p90", f"{pct(ours['warm_s'], 90) * ms:.1f} ms", "", None),
        ("warm / cold", f"1/{cold / warm:.1f}", "<= 1/15", warm / cold <= 1 / 15),
        (
            f"second session's first call while Chromium runs (median of {second_n})",
            f"{second:.0f} ms",
            "<= 200 ms",
            second <= 200,
        ),
        (
            "second session's first call without the spare context",
            f"{second_nospare:.0f} ms",
            "",
            None,
        ),
    ]
    result: dict[str, Any] = {
        "quick": args.quick,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "url_page_bytes": len(PAGE),
        "carnb": ours,
        "summary_ms": {
            "cold": cold,
            "warm": warm,
            "second_session": second,
            "second_session_no_spare": second_nospare,
        },
    }
    if "error" in peer:
        rows.append(
            ("peer car-runtime browser_run", "unavailable: " + peer["error"][:120], "", None)
        )
    else:
        peer_first = median(peer["first_s"]) * ms
        peer_warm_ms = median(peer["warm_s"]) * ms
        rows += [
            (
                f"peer car-runtime first call (median of {peer_runs} processes)",
                f"{peer_first:.0f} ms",
                "",
                None,
            ),
            (
                f"peer car-runtime warm navigate + observe (median of {len(peer['warm_s'])})",
                f"{peer_warm_ms:.1f} ms",
                "",
                None,
            ),
            ("peer warm / cold", f"1/{peer_first / peer_warm_ms:.1f}", "", None),
            ("carnb / peer, cold", f"{cold / peer_first:.2f}", "", None),
            ("carnb / peer, warm", f"{warm / peer_warm_ms:.2f}", "", None),
        ]
        result["peer"] = peer
        result["summary_ms"].update({"peer_first": peer_first, "peer_warm": peer_warm_ms})
    rows.append(
        (
            "load average (1 min) before / after the run",
            f"{load_before[0]:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
            "",
            None,
        )
    )
    result["rows"] = [{"measure": m, "value": v, "goal": g, "ok": ok} for m, v, g, ok in rows]
    save("browser", result)
    return table(rows, "browser (carnb.browser, real Chromium; peer: car-runtime)")


if __name__ == "__main__":
    print(main())
