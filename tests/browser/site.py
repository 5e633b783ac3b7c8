"""A tiny local web site for the browser tests: real HTTP on 127.0.0.1, pages written here."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PAGES: dict[str, str] = {
    "/index.html": """<!doctype html><html><head><title>Home</title></head><body>
<h1>Welcome</h1>
<p>This is the <b>home</b> page.</p>
<button id="show" onclick="document.getElementById('out').textContent='Clicked!'">Show</button>
<label for="name">Name</label><input id="name" type="text">
<a href="/second.html">Second page</a>
<form action="/result.html" method="get">
  <input name="q" aria-label="Search">
</form>
<div id="out"></div>
<button style="display:none">Hidden button</button>
</body></html>""",
    "/second.html": """<!doctype html><html><head><title>Second</title></head><body>
<h1>Second page</h1><a href="/index.html">Back home</a></body></html>""",
    "/long.html": """<!doctype html><html><head><title>Long</title></head><body style="margin:0">
<div id="pos">at top</div>
<div style="height:5000px;background:linear-gradient(#fff,#000)">tall</div>
<script>
addEventListener('scroll', () => {
  document.getElementById('pos').textContent = 'scrolled to ' + Math.round(scrollY);
});
</script></body></html>""",
    "/replace.html": """<!doctype html><html><head><title>Replace</title></head><body>
<button id="old" onclick="document.body.innerHTML='<button>Fresh</button><p>replaced</p>'">
Replace everything</button></body></html>""",
    "/keys.html": """<!doctype html><html><head><title>Keys</title></head><body>
<p id="k">no key yet</p>
<script>
addEventListener('keydown', (e) => {
  if (['Control', 'Shift', 'Alt', 'Meta'].includes(e.key)) return;
  document.getElementById('k').textContent = 'pressed ' + (e.ctrlKey ? 'ctrl+' : '') + e.key;
});
</script></body></html>""",
    "/later.html": """<!doctype html><html><head><title>Later</title></head><body>
<p>moving soon</p>
<script>setTimeout(() => { location.href = '/second.html'; }, 300);</script></body></html>""",
    "/slowload.html": """<!doctype html><html><head><title>Slow load</title></head><body>
<p id="state">loading</p>
<img src="/slow.png" alt="slow">
<script>addEventListener('load', () => {
  document.getElementById('state').textContent = 'fully loaded';
});</script></body></html>""",
    "/links.html": """<!doctype html><html><head><title>Links</title></head><body>
<a href="/slowload.html">Go slow</a></body></html>""",
    "/hide.html": """<!doctype html><html><head><title>Hide</title></head><body>
<button onclick="document.getElementById('t').style.display='none'">Hide</button>
<button id="t">Target</button></body></html>""",
    "/select.html": """<!doctype html><html><head><title>Select</title></head><body>
<label for="c">Color</label>
<select id="c"><option value="r">Red</option><option value="g">Green</option>
<option value="b">Blue</option></select></body></html>""",
    "/popup.html": """<!doctype html><html><head><title>Popup</title></head><body>
<a href="/second.html" target="_blank">Open in a new tab</a></body></html>""",
    "/busy.html": """<!doctype html><html><head><title>Busy</title></head><body>
<button onclick="for (;;) {}">Freeze</button></body></html>""",
}

# A 1x1 transparent PNG.
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6300010000000500010d0a2db40000000049454e44ae426082"
)


class Site:
    """Serve :data:`PAGES` plus a few dynamic routes on 127.0.0.1:<free port> in a thread."""

    def __init__(self) -> None:
        self.release = threading.Event()  # lets /hang requests finish at shutdown
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(
                self,
                code: int,
                body: bytes,
                ctype: str = "text/html",
                headers: dict[str, str] | None = None,
            ) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                parts = urlsplit(self.path)
                path = parts.path
                if path in PAGES:
                    self._send(200, PAGES[path].encode())
                elif path == "/result.html":
                    q = parse_qs(parts.query).get("q", [""])[0]
                    body = (
                        f"<html><head><title>Result</title></head><body>"
                        f"<p>You searched for {q}</p></body></html>"
                    )
                    self._send(200, body.encode())
                elif path == "/setcookie":
                    self._send(
                        200,
                        b"<html><body><p>cookie set</p></body></html>",
                        headers={"Set-Cookie": "flavor=oatmeal; Path=/"},
                    )
                elif path == "/showcookie":
                    cookie = self.headers.get("Cookie") or "no cookie"
                    self._send(200, f"<html><body><p>cookie: {cookie}</p></body></html>".encode())
                elif path == "/slow.png":
                    time.sleep(0.6)
                    self._send(200, PIXEL, "image/png")
                elif path == "/hang":
                    site.release.wait(60)  # never answers while the test runs
                else:
                    self._send(404, b"<html><body><p>not found</p></body></html>")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def url(self, path: str) -> str:
        return self.base + path

    def start(self) -> Site:
        self.thread.start()
        return self

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
