"""Real parts the suite drives (Redis, Chromium): a loud skip where missing, a failure under CI=true."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def missing(what: str) -> None:
    """Skip (locally) or fail (in CI) because `what` is not available."""
    message = f"REAL PART MISSING: {what}"
    if IN_CI:
        pytest.fail(message + " (CI=true: a missing part is a failure)")
    pytest.skip(message)


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        missing("Debian chromium not on PATH (apt-get install chromium)")
    assert path is not None
    return path
