"""Debian's Chromium, as Playwright drives it (no browser download), and waiting on what a page shows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.wait import wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1360, "height": 860}  # a laptop's viewport


def wait_in_page(page: Page, expression: str, timeout: float = 60.0) -> float:
    """Poll a JavaScript expression (or "() => ..." function) until it is truthy; the seconds that took.
    Not Playwright's wait_for_function: on a page whose CSP forbids 'unsafe-eval' (every page of Server1),
    its in-page polling evaluates the predicate again later, which Chromium may then refuse ("EvalError:
    ... violates the following Content Security Policy directive", microsoft/playwright#36982; seen in a
    loaded suite run). Each page.evaluate is one evaluation of its own, which the CSP lets through."""
    return wait_for(lambda: page.evaluate(expression), expression, timeout)
