"""carnb's browser: a lazily launched Chromium (Playwright, async API) with one slot per session.

Public surface: :func:`find_chromium`, :func:`validate_script`, :class:`BrowserPool` (one Chromium
for all sessions, launched on first use) and :class:`BrowserSlot` (a session's isolated context).
Playwright is imported only inside functions, so importing this package is cheap and works
without Playwright installed. Modules: ``discovery`` (finding Chromium), ``script`` (validating
scripts), ``observe`` (the in-page walker), ``ops`` (one op on a page), ``slot`` and ``pool``.
"""

from carnb.browser.discovery import find_chromium
from carnb.browser.pool import BrowserPool
from carnb.browser.script import validate_script
from carnb.browser.slot import BrowserSlot

__all__ = ["BrowserPool", "BrowserSlot", "find_chromium", "validate_script"]
