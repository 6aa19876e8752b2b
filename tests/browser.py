"""A real browser for tests: Debian's Chromium (installed by `scripts/system-tools`) driven by
Playwright over its own protocol — no browser build is downloaded — and the helpers the page
tests share: keyboard-only navigation, axe-core's accessibility check, screenshots."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, ViewportSize, async_playwright

ROOT = Path(__file__).resolve().parent.parent
AXE_VERSION = "4.14.1"  # scripts/system-tools fetches it
AXE = ROOT / ".amends" / "cache" / f"axe-core-{AXE_VERSION}" / "axe.min.js"
PHONE: ViewportSize = {"width": 390, "height": 844}  # a common phone's CSS viewport
TAB_LIMIT = 40


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "no chromium on PATH: run scripts/system-tools (make tools)"
    return found


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """The system's Chromium, headless."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True,
            # Root in CI and containers: Chromium's sandbox needs user namespaces there.
            args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            await browser.close()


async def phone_page(browser: Browser, locale: str = "en-GB") -> Page:
    """A page the size of a phone. The pages' policy allows no script: axe-core is injected
    past it (`bypass_csp`), as a test harness, not as something the page runs."""
    context = await browser.new_context(viewport=PHONE, locale=locale, bypass_csp=True)
    return await context.new_page()


@dataclass(frozen=True)
class Violation:
    rule: str
    impact: str | None
    help: str
    targets: list[str]


async def axe(page: Page) -> list[Violation]:
    """axe-core's WCAG 2.x A/AA rules (2.2 included) run in the page: what they found."""
    assert AXE.exists(), f"no {AXE.relative_to(ROOT)}: run scripts/system-tools (make tools)"
    await page.add_script_tag(path=str(AXE))
    found: dict[str, Any] = await page.evaluate(
        """() => axe.run(document, {runOnly: {type: 'tag', values:
               ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}})""")
    return [Violation(v["id"], v.get("impact"), v["help"],
                      [", ".join(n["target"]) for n in v["nodes"]])
            for v in found["violations"]]


async def focused(page: Page) -> dict[str, str]:
    """The focused element: its tag, its text (a field's: its label's), whether it is checked,
    and the outline it is drawn with."""
    described: dict[str, str] = await page.evaluate("""() => {
        const e = document.activeElement, style = getComputedStyle(e);
        const label = e.labels && e.labels.length ? e.labels[0].innerText : '';
        return {tag: e.tagName.toLowerCase(), text: (label || e.innerText || '').trim(),
                checked: String(Boolean(e.checked)),
                outline: style.outlineStyle + ' ' + style.outlineWidth};
    }""")
    return described


async def tab_to(page: Page, text: str) -> list[dict[str, str]]:
    """Press Tab until the focused element's text contains `text`; every stop on the way
    (asserting it gets there within TAB_LIMIT presses)."""
    stops: list[dict[str, str]] = []
    for _ in range(TAB_LIMIT):
        await page.keyboard.press("Tab")
        stops.append(await focused(page))
        if text in stops[-1]["text"]:
            return stops
    raise AssertionError(f"Tab never reached {text!r}: {stops}")


async def screenshot(page: Page, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"  # Playwright makes the folder
    await page.screenshot(path=str(path), full_page=True)
    return path
