"""``CarMagics``: the ``%car`` / ``%%car`` magic and its ``%config CarMagics.<option>`` options.

Thin by design: the options, and parsing the command line (:mod:`carnb.kernel.parser`); the
parsed arguments name their command function (``args.func``, a ``cmd_*`` function), which runs on
the notebook engine (:mod:`carnb.kernel.engine`) and returns an object that renders itself.
Argument errors become a one-line ``UsageError``; runtime failures and Ctrl-C are one line too
(:mod:`carnb.kernel.calls`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython import version_info as ipython_version
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display
from traitlets import Bool, Float, Int, List, TraitError, Unicode, validate

from carnb.config import DECISION_TIMEOUT_S
from carnb.kernel.cellrun import Cell, run_cell_body
from carnb.kernel.helpdoc import full_usage
from carnb.kernel.parser import ArgError, HelpShown, build_cell_parser, build_parser, parse

if TYPE_CHECKING:
    from carnb.config import Settings
    from carnb.kernel.engine import NotebookEngine


COUNTS_BEFORE_RUN = ipython_version >= (9, 0)


@magics_class
class CarMagics(Magics):
    """``%car``: drive the CAR session host in this kernel (``%car --help``)."""

    port = Int(
        0,
        help="TCP port of the session server on 127.0.0.1 (0: any free port).",
    ).tag(config=True)
    auth = Bool(
        True,
        help="Require a token from clients (session.auth). False accepts every local client: "
        "only on a machine you trust.",
    ).tag(config=True)
    allowed_origins = List(
        Unicode(),
        default_value=[],
        help="Origins allowed to open a WebSocket (e.g. 'http://localhost:8888'). Requests with "
        "no Origin header (CAR clients) are always allowed; any other Origin is refused.",
    ).tag(config=True)
    chromium = Unicode(
        None,
        allow_none=True,
        help="Chromium executable for the browser slot (a path or a name on PATH). Default: "
        "$CARNB_CHROMIUM, then Playwright's Chromium, then chromium on PATH.",
    ).tag(config=True)
    home = Unicode(
        None,
        allow_none=True,
        help="carnb's data directory (agent graphs, runs, memory/ files). Default: $CARNB_HOME, "
        "else ~/.carnb.",
    ).tag(config=True)
    store = Unicode(
        None,
        allow_none=True,
        help="Where runs are kept: a postgresql://user@host:port/db URL shared by a team's "
        "kernels and servers. Default: $CARNB_STORE, else SQLite files under home.",
    ).tag(config=True)

    decision_timeout = Float(
        DECISION_TIMEOUT_S,
        help="Seconds a supervised proposal (%car supervise, carnb.supervisor, "
        "supervision.subscribe) waits for a verdict before it is rejected (fail-closed).",
    ).tag(config=True)

    @validate("decision_timeout")
    def _valid_decision_timeout(self, proposal: Any) -> float:
        value = proposal["value"]
        if not 0 < value <= 3600:
            raise TraitError(
                f"CarMagics.decision_timeout must be in (0, 3600] seconds, not {value}"
            )
        return float(value)

    otel_endpoint = Unicode(
        None,
        allow_none=True,
        help="Export every run as an OpenTelemetry trace to this OTLP/HTTP endpoint (Phoenix: "
        "http://127.0.0.1:6006/v1/traces; Langfuse: its /api/public/otel endpoint with "
        "OTEL_EXPORTER_OTLP_HEADERS set). Default: $CARNB_OTEL_ENDPOINT. Needs carnb[otel].",
    ).tag(config=True)
    otel_content = Bool(
        None,
        allow_none=True,
        help="Export message and tool content too. Default: "
        "$OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT, else off.",
    ).tag(config=True)
    prices = Unicode(
        None,
        allow_none=True,
        help='A JSON price table file {model: {"input_per_mtok", "output_per_mtok"}} (USD). '
        "Default: $CARNB_PRICES; carnb.prices({...}) sets one while the kernel runs.",
    ).tag(config=True)

    switch_interval = Float(
        None,
        allow_none=True,
        help="If set, the interpreter's thread switch interval in seconds while carnb is loaded "
        "(sys.setswitchinterval; Python's default is 0.005). A cell spinning in pure Python "
        "holds the GIL; the server's thread gets it back after at most this long, several times "
        "per request, so 0.001 cuts the round trip an external client sees while such a cell "
        "runs (about 4x here) at a small cost to CPU-bound multi-threaded code. Restored at "
        "unload.",
    ).tag(config=True)

    @validate("switch_interval")
    def _valid_switch_interval(self, proposal: Any) -> float | None:
        value = proposal["value"]
        if value is not None and not 0.0001 <= value <= 0.1:
            raise TraitError(
                f"CarMagics.switch_interval must be between 0.0001 and 0.1 seconds, not {value}"
            )
        return None if value is None else float(value)

    @validate("port")
    def _valid_port(self, proposal: Any) -> int:
        value = proposal["value"]
        if not 0 <= value <= 65535:
            raise TraitError(f"CarMagics.port must be 0..65535 (0: any free port), not {value}")
        return int(value)

    @validate("allowed_origins")
    def _valid_origins(self, proposal: Any) -> list[str]:
        out = []
        for origin in proposal["value"]:
            o = origin.strip().rstrip("/")
            if o != "null" and not (o.startswith("http://") or o.startswith("https://")):
                raise TraitError(
                    f"CarMagics.allowed_origins: {origin!r} is not an origin; use "
                    "'http://host:port' or 'https://host'"
                )
            out.append(o)
        return out

    @validate("chromium")
    def _valid_chromium(self, proposal: Any) -> str | None:
        raw = proposal["value"]
        if raw is None or not raw.strip():
            return None
        value = str(raw).strip()
        if os.sep in value:
            path = Path(value).expanduser()
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise TraitError(f"CarMagics.chromium: {value!r} is not an executable file")
            return str(path)
        if shutil.which(value) is None:
            raise TraitError(f"CarMagics.chromium: {value!r} is not on PATH")
        return value

    @validate("home")
    def _valid_home(self, proposal: Any) -> str | None:
        value = proposal["value"]
        if value is None or not value.strip():
            return None
        path = Path(value).expanduser()
        if path.exists() and not path.is_dir():
            raise TraitError(f"CarMagics.home: {value!r} exists and is not a directory")
        return str(path)

    def __init__(self, shell: Any = None, engine: NotebookEngine | None = None, **kw: Any) -> None:
        super().__init__(shell=shell, **kw)
        self.engine = engine  # None once unloaded
        self.line_parser = build_parser()
        self.cell_parser = build_cell_parser()

    def settings(self) -> Settings:
        from carnb.config import Settings, default_home

        settings = Settings(
            port=self.port,
            auth=self.auth,
            allowed_origins=tuple(self.allowed_origins),
            chromium=self.chromium,
            home=Path(self.home) if self.home else default_home(),
            decision_timeout=self.decision_timeout,
        )
        if self.store:
            settings = settings.with_(store=self.store)
        if self.otel_endpoint:
            settings = settings.with_(otel_endpoint=self.otel_endpoint)
        if self.otel_content is not None:
            settings = settings.with_(otel_content=self.otel_content)
        if self.prices:
            settings = settings.with_(prices=Path(self.prices).expanduser())
        return settings

    @line_cell_magic
    def car(self, line: str, cell: str | None = None) -> Any:
        """Drive carnb: `%car --help` lists the commands, `%car COMMAND --help` explains one."""
        __tracebackhide__ = True  # IPython: show the cell's frames, not ours
        if self.engine is None:
            raise UsageError("carnb is not loaded: run `%load_ext carnb`")
        parser = self.line_parser if cell is None else self.cell_parser
        if cell is None and not line.strip():
            print(parser.format_help())
            return None
        try:
            args = parse(parser, line)
        except HelpShown as shown:
            print(shown.text)
            return None
        except ArgError as exc:
            raise UsageError(str(exc)) from None
        if cell is None:
            result = args.func(self.engine, args)
        else:
            result = args.func(self.engine, args, self._cell(cell))
        self.engine.known.note_result(result)
        if cell is None and result is not None and self._is_a_middle_line(line):
            display(result)  # type: ignore[no-untyped-call]  # IPython shows only the last line
        return result

    def _is_a_middle_line(self, line: str) -> bool:
        """``%car LINE`` stands alone on a line of the running cell that is not its last line:
        its result would be dropped (an assignment ``x = %car ...`` is not alone)."""
        info = self.engine.recorder.running_info if self.engine is not None else None
        source = getattr(info, "raw_cell", None)
        if not isinstance(source, str):
            return False
        lines = [s.strip() for s in source.splitlines() if s.strip()]
        me = f"%car {line.strip()}"
        return me in lines[:-1] and lines[-1] != me

    car.__doc__ = full_usage(build_parser(), build_cell_parser())

    def _running_count(self) -> int | None:
        """The execution count of the cell running now (its ``[N]``). IPython 9 increments
        ``shell.execution_count`` before the cell runs (when it stores history), 8 after."""
        count = getattr(self.shell, "execution_count", None)
        if not isinstance(count, int) or self.engine is None:
            return None
        info = self.engine.recorder.running_info
        if COUNTS_BEFORE_RUN and getattr(info, "store_history", False):
            return count - 1
        return count

    def _cell(self, source: str) -> Cell:
        shell = self.shell
        count = self._running_count()

        def run() -> Any:
            __tracebackhide__ = True  # IPython: show the cell's frames, not ours
            return run_cell_body(shell, source, count)

        return Cell(
            source=source,
            execution_count=count,
            run=run,
            show=display,
        )
