"""``python -m carnb serve``: the session server without Jupyter."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from carnb import __version__
from carnb.config import BIND_ADDRESS, BROWSER_TIMEOUT_MS, DECISION_TIMEOUT_S, MODEL_TIMEOUT_S


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m carnb",
        description="carnb: a CAR (Common Agent Runtime) session server.",
    )
    p.add_argument("--version", action="version", version=f"carnb {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser(
        "serve",
        help="run the WebSocket session server in the foreground",
        description="Run the session server in the foreground until SIGINT or SIGTERM. "
        "Clients find it through the connection file (url, token, host_token, agents).",
    )
    s.add_argument(
        "--host", default=BIND_ADDRESS, help=f"interface to bind (default {BIND_ADDRESS})"
    )
    s.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    s.add_argument(
        "--no-auth",
        action="store_true",
        help="accept every client without a token (only on a machine you trust)",
    )
    s.add_argument(
        "--agent",
        action="append",
        default=[],
        metavar="NAME",
        help="register an agent with its own token (repeatable)",
    )
    s.add_argument("--home", type=Path, help="data directory (default $CARNB_HOME or ~/.carnb)")
    s.add_argument(
        "--store",
        metavar="URL",
        help="where runs are kept: a postgresql://user@host:port/db URL shared by a team's "
        "servers (default: $CARNB_STORE, else SQLite files under the data directory)",
    )
    s.add_argument("--connection-file", type=Path, help="where to write the connection file")
    s.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow WebSocket upgrades from this Origin (repeatable; default: none, absent "
        "Origin headers are always allowed)",
    )
    s.add_argument("--chromium", help="path of the Chromium executable for browser.run")
    s.add_argument(
        "--browser-timeout",
        type=float,
        default=BROWSER_TIMEOUT_MS / 1000,
        metavar="SECONDS",
        help=f"time limit of each browser.run step (default {BROWSER_TIMEOUT_MS / 1000:g})",
    )
    s.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="[NAME=]MODULE:CALLABLE",
        help="serve infer with this Python callable (fn(request) -> reply), imported from "
        "MODULE; NAME defaults to the callable's name; the first one is the default model "
        "(repeatable). Clients may also serve models with inference.register_runner",
    )
    s.add_argument(
        "--model-timeout",
        type=float,
        default=MODEL_TIMEOUT_S,
        metavar="SECONDS",
        help=f"time limit of one inference (default {MODEL_TIMEOUT_S:g})",
    )
    s.add_argument(
        "--no-record-inference",
        action="store_true",
        help="do not keep infer requests and replies in runs (runs.replay and runs.fork then "
        "rebuild requests from the recorded turns)",
    )
    s.add_argument(
        "--decision-timeout",
        type=float,
        default=DECISION_TIMEOUT_S,
        metavar="SECONDS",
        help="a proposal supervised with supervision.subscribe is rejected when no verdict "
        f"comes within this time (default {DECISION_TIMEOUT_S:g})",
    )
    s.add_argument(
        "--otel-endpoint",
        metavar="URL",
        help="export every run as an OpenTelemetry trace to this OTLP/HTTP endpoint (Phoenix: "
        "http://127.0.0.1:6006/v1/traces; default $CARNB_OTEL_ENDPOINT; needs carnb[otel])",
    )
    s.add_argument(
        "--otel-content",
        action="store_true",
        default=None,
        help="export message and tool content too (default: "
        "$OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT, else off)",
    )
    s.add_argument(
        "--prices",
        type=Path,
        metavar="FILE",
        help='a JSON price table {model: {"input_per_mtok", "output_per_mtok"}} in USD '
        "(default $CARNB_PRICES)",
    )
    s.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    c = sub.add_parser(
        "chromium",
        help="show which Chromium browser.run would launch",
        description="Print the Chromium executable carnb would use (CARNB_CHROMIUM, then "
        "Playwright's own browser, then chromium on PATH); exit 1 with install advice if none.",
    )
    c.add_argument("--configured", help="a configured path to try after CARNB_CHROMIUM")
    return p


def chromium(args: argparse.Namespace) -> int:
    from carnb.browser import find_chromium
    from carnb.errors import BrowserUnavailable

    try:
        print(find_chromium(args.configured))
    except BrowserUnavailable as exc:
        print(f"carnb: {exc}", file=sys.stderr)
        return 1
    return 0


def load_model(spec: str) -> tuple[str, Callable[..., Any]]:
    """``[NAME=]module:callable`` -> ``(name, callable)``; ``ValueError`` saying what is wrong."""
    name, _, target = spec.rpartition("=") if "=" in spec else ("", "", spec)
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--model {spec!r}: expected [NAME=]MODULE:CALLABLE")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"--model {spec!r}: {type(exc).__name__}: {exc}") from exc
    if not callable(obj):
        raise ValueError(f"--model {spec!r}: {attr} is not callable")
    return name or attr.rsplit(".", 1)[-1], obj


def serve(args: argparse.Namespace) -> int:
    from carnb.config import Settings, default_home
    from carnb.errors import CarnbError
    from carnb.runtime import Runtime

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        settings = Settings(
            bind_address=args.host,
            port=args.port,
            auth=not args.no_auth,
            home=(args.home.expanduser() if args.home else default_home()),
            connection_file=args.connection_file,
            agents=tuple(args.agent),
            allowed_origins=tuple(args.allow_origin),
            chromium=args.chromium,
            browser_timeout_ms=int(args.browser_timeout * 1000),
            model_timeout=args.model_timeout,
            record_inference=not args.no_record_inference,
            decision_timeout=args.decision_timeout,
            **({"store": args.store} if args.store is not None else {}),
        )
        if args.otel_endpoint:
            settings = settings.with_(otel_endpoint=args.otel_endpoint)
        if args.otel_content:
            settings = settings.with_(otel_content=True)
        if args.prices is not None:
            settings = settings.with_(prices=args.prices)
    except CarnbError as exc:
        print(f"carnb: {exc}", file=sys.stderr)
        return 2
    try:
        models = [load_model(spec) for spec in args.model]
    except ValueError as exc:
        print(f"carnb: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    rt = Runtime(settings)
    try:
        rt.start()
    except (CarnbError, OSError) as exc:
        print(f"carnb: could not start the server: {exc}", file=sys.stderr)
        return 1
    try:
        for name, fn in models:
            try:
                rt.register_model(fn, name=name)
            except CarnbError as exc:
                print(f"carnb: --model {name}: {exc}", file=sys.stderr)
                return 1
        print(f"carnb serving on {rt.url}", flush=True)
        print(f"connection file: {rt.connection_file}", flush=True)
        logging.getLogger("carnb").info("store: %s", rt.store_display)
        while not stop.wait(0.5):
            pass
    finally:
        rt.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "chromium":
        return chromium(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
