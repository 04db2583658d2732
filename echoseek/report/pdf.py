"""Print the report's HTML to PDF with headless Chromium (Debian's ``chromium``, installed by
``make browser``; ``$ECHOSEEK_CHROMIUM`` names another Chrome or Chromium binary)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from echoseek.errors import ConfigError, EchoseekError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str:
    """The Chromium binary to print with; ConfigError naming how to get one when none is found."""
    configured = os.environ.get("ECHOSEEK_CHROMIUM", "")
    candidates = [configured] if configured else list(BROWSERS)
    for name in candidates:
        found = shutil.which(name)
        if found:
            return found
    raise ConfigError(
        f"no PDF engine: {' or '.join(candidates)} not found (install it with `make browser`, "
        "set ECHOSEEK_CHROMIUM, or pass pdf=false)"
    )


def html_to_pdf(html_file: Path, pdf_file: Path, browser: str, timeout_s: float = 180) -> Path:
    """Print ``html_file`` (and the images it links) to ``pdf_file``, A4, no header/footer."""
    with tempfile.TemporaryDirectory(prefix="echoseek-chromium-") as profile:
        args = [
            browser,
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf_file}",
            html_file.resolve().as_uri(),
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses root otherwise; our own page
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise EchoseekError(f"{browser}: printing the PDF took over {timeout_s:.0f} s") from exc
    if not pdf_file.is_file() or pdf_file.read_bytes()[:5] != b"%PDF-":
        tail = (done.stderr or "").strip().splitlines()[-3:]
        raise EchoseekError(f"{browser} did not write a PDF (exit {done.returncode}): {tail}")
    return pdf_file
