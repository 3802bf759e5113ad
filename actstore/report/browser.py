"""Look at a report as a person would: render it in headless Chromium (Debian's ``chromium``) and read back
what the page shows. Used by the tests and to make the README's screenshot."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ..errors import ResultsError

__all__ = ["find_chromium", "look_at", "CHROMIUM_FLAGS"]

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--mute-audio"]

_PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || (e.target && e.target.src) || e)), true);
const _err = console.error; console.error = (...a) => { window.__errors.push(a.join(' ')); _err(...a); };
window.addEventListener('load', () => {
  const imgs = [...document.querySelectorAll('img')].map(img => {
    const c = document.createElement('canvas'); c.width = Math.min(img.naturalWidth, 400);
    c.height = Math.max(1, Math.round(img.naturalHeight * c.width / Math.max(1, img.naturalWidth)));
    let spread = 0;
    try { const g = c.getContext('2d'); g.drawImage(img, 0, 0, c.width, c.height);
      const d = g.getImageData(0, 0, c.width, c.height).data; let lo = 255, hi = 0;
      for (let i = 0; i < d.length; i += 4) { const v = (d[i] + d[i + 1] + d[i + 2]) / 3; lo = Math.min(lo, v); hi = Math.max(hi, v); }
      spread = hi - lo; } catch (x) { window.__errors.push('canvas: ' + x); }
    const fig = img.closest('figure'); const cap = fig && fig.querySelector('figcaption');
    return {id: fig ? fig.id : '', decoded: img.complete && img.naturalWidth > 0, natural: img.naturalWidth,
            shown: img.getBoundingClientRect().width, spread: spread, caption: cap ? cap.textContent.trim().length : 0};
  });
  const out = document.createElement('pre'); out.id = 'actstore-look';
  out.textContent = JSON.stringify({errors: window.__errors, images: imgs, height: document.body.scrollHeight,
    title: document.title, headings: [...document.querySelectorAll('h1,h2')].map(h => h.textContent)});
  document.body.appendChild(out);
});
</script>"""


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable on PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


def _run(chromium: str, args: list[str], profile: str) -> str:
    proc = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120)
    if proc.returncode != 0:
        raise ResultsError(f"chromium could not render the report: {proc.stderr.strip().splitlines()[-1:]}")
    return proc.stdout


def look_at(page: str | os.PathLike[str], width: int = 1400, screenshot: str | os.PathLike[str] | None = None
            ) -> dict[str, Any]:
    """Render ``page`` at ``width`` px: console and load errors, each image (decoded, natural and shown width,
    pixel spread: 0 is blank, caption length), the page height, title and headings; a PNG of the whole page
    at ``screenshot`` when given."""
    chromium = find_chromium()
    if chromium is None:
        raise ResultsError("no chromium on PATH (Debian: apt-get install chromium)")
    text = Path(page).read_text()
    with tempfile.TemporaryDirectory(prefix="actstore-look-") as tmp:
        probe = Path(tmp) / "page.html"
        probe.write_text(text.replace("</body>", _PROBE + "</body>", 1))
        dom = _run(chromium, ["--dump-dom", "--virtual-time-budget=15000", f"--window-size={width},1000",
                              probe.as_uri()], tmp + "/profile")
        found = re.search(r'<pre id="actstore-look">(.*?)</pre>', dom, re.S)
        if found is None:
            raise ResultsError("the report's page did not finish loading in chromium")
        import html

        seen = json.loads(html.unescape(found.group(1)))
        if screenshot is not None:
            _run(chromium, [f"--screenshot={Path(screenshot).resolve()}", f"--window-size={width},{seen['height']}",
                            "--virtual-time-budget=15000", Path(page).resolve().as_uri()], tmp + "/profile2")
    return seen
