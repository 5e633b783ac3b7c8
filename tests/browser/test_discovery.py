"""Finding Chromium: env var, configured path, Playwright's own browser, PATH; a clear error."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from carnb.browser import BrowserPool, find_chromium
from carnb.browser.discovery import _playwright_revisions
from carnb.errors import BrowserUnavailable

from .conftest import chromium_processes


def fake_executable(path: Path, body: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No CARNB_CHROMIUM, an empty PATH and an empty Playwright browser directory."""
    registry = tmp_path / "ms-playwright"
    registry.mkdir()
    monkeypatch.delenv("CARNB_CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", "")
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(registry))
    return registry


def assert_install_help(message: str) -> None:
    assert "apt-get install chromium" in message
    assert "python -m playwright install chromium" in message
    assert "CARNB_CHROMIUM" in message


def test_nothing_found_says_how_to_install(bare_env: Path) -> None:
    with pytest.raises(BrowserUnavailable) as info:
        find_chromium()
    assert_install_help(info.value.message)
    assert "no Chromium found" in info.value.message


def test_env_pointing_nowhere_is_an_error(
    bare_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CARNB_CHROMIUM", str(tmp_path / "nowhere" / "chromium"))
    with pytest.raises(BrowserUnavailable) as info:
        find_chromium()
    assert "CARNB_CHROMIUM=" in info.value.message and "nowhere" in info.value.message
    assert_install_help(info.value.message)


def test_configured_path_pointing_nowhere_is_an_error(bare_env: Path) -> None:
    with pytest.raises(BrowserUnavailable) as info:
        find_chromium("/no/such/chromium")
    assert "/no/such/chromium" in info.value.message
    assert_install_help(info.value.message)


async def test_pool_without_chromium_raises_and_starts_nothing(
    bare_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CARNB_CHROMIUM", str(tmp_path / "nowhere"))
    before = len(chromium_processes())
    pool = BrowserPool()
    slot = pool.slot("s1")
    with pytest.raises(BrowserUnavailable) as info:
        await slot.run({"operations": [{"op": "observe"}]})
    assert_install_help(info.value.message)
    assert slot.state == "not launched" and not pool.running
    assert len(chromium_processes()) == before
    await pool.close()


def test_order_env_then_configured_then_playwright_then_path(
    bare_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_path = fake_executable(tmp_path / "bin" / "chromium", "\x7fELF not a script")
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert find_chromium() == str(on_path)

    revision = _playwright_revisions().get("chromium", "1")
    own = fake_executable(bare_env / f"chromium-{revision}" / "chrome-linux64" / "chrome")
    assert find_chromium(headless=False) == str(own)
    shell = fake_executable(
        bare_env
        / f"chromium_headless_shell-{revision}"
        / "chrome-headless-shell-linux64"
        / "chrome-headless-shell"
    )
    assert find_chromium(headless=True) == str(shell)

    configured = fake_executable(tmp_path / "configured" / "chrome")
    assert find_chromium(str(configured)) == str(configured)

    env = fake_executable(tmp_path / "env" / "chromium")
    monkeypatch.setenv("CARNB_CHROMIUM", str(env))
    assert find_chromium(str(configured)) == str(env)


def test_env_may_name_a_program_on_path(
    bare_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prog = fake_executable(tmp_path / "bin" / "my-chrome")
    monkeypatch.setenv("PATH", str(prog.parent))
    monkeypatch.setenv("CARNB_CHROMIUM", "my-chrome")
    assert find_chromium() == str(prog)


def test_playwright_revision_from_its_package() -> None:
    revisions = _playwright_revisions()
    assert revisions.get("chromium", "").isdigit()


@pytest.mark.skipif(not os.path.exists("/usr/lib/chromium/chromium"), reason="Debian layout only")
def test_debian_wrapper_script_is_unwrapped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wrapper = fake_executable(tmp_path / "bin" / "chromium", '#!/bin/sh\nexec /usr/lib/x "$@"\n')
    monkeypatch.delenv("CARNB_CHROMIUM", raising=False)
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path / "none"))
    monkeypatch.setenv("PATH", str(wrapper.parent))
    assert find_chromium() == "/usr/lib/chromium/chromium"
    # an explicit setting is used as given
    monkeypatch.setenv("CARNB_CHROMIUM", str(wrapper))
    assert find_chromium() == str(wrapper)
