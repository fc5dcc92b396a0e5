"""The web page in a real browser: headless Chromium (the Debian package, driven by Playwright)
loads ``/`` from a real uvicorn server, uploads a real speech file and shows the right speaker.

Skips with the reason when Chromium, Playwright or ../shared/data/speech-dev is absent.
"""

from __future__ import annotations

import csv
import shutil
import socket
import threading
import time

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(speech_dev, spectral_embedder, tmp_path):
    """A database of 6 real speakers (every file but the last), the server URL, and a
    held-back file with its speaker."""
    import httpx
    import uvicorn

    from speakerdb.api import SpeakerDB
    from speakerdb.server.app import create_app

    by_spk: dict[str, list] = {}
    with open(speech_dev / "manifest.csv", newline="") as f:
        for row in csv.DictReader(f):
            by_spk.setdefault(row["speaker"], []).append(speech_dev / row["path"])
    chosen = [s for s in sorted(by_spk) if len(by_spk[s]) >= 4][:6]
    manifest = tmp_path / "enroll.csv"
    manifest.write_text("path,speaker\n" + "".join(
        f"{p},{s}\n" for s in chosen for p in by_spk[s][:-1]))
    db = SpeakerDB.create(tmp_path / "home", model="spectral", embedder=spectral_embedder)
    db.ingest([manifest], layout="manifest")
    probe, truth = by_spk[chosen[0]][-1], chosen[0]
    assert db.identify(probe).candidates[0].speaker == truth  # the model gets it right
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(db), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url, probe, truth, chosen
    server.should_exit = True
    thread.join(10)
    db.close()


def test_page_identifies_an_uploaded_file(served):
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (Debian package `chromium`)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    url, probe, truth, chosen = served
    requests = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox"])
        page = browser.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.goto(url + "/")
        page.wait_for_selector("#speakers tr")  # the speaker list loaded
        rows = page.locator("#speakers tr").all_inner_texts()
        assert sorted(r.split("\t")[0].split()[0] for r in rows) == sorted(chosen)
        page.set_input_files("#file", str(probe))
        page.wait_for_selector("#result:not([hidden])", timeout=30_000)
        decision = page.inner_text("#decision")
        first_bar = page.locator("#bars .bar").first.inner_text()
        threshold = page.inner_text("#threshold")
        browser.close()
    assert truth in first_bar, first_bar
    assert truth in decision or "Unknown" in decision, decision
    assert float(threshold) > 0
    assert all(u.startswith(url) or u.startswith("blob:") or u.startswith("data:")
               for u in requests), [u for u in requests if not u.startswith(url)]


def test_page_draws_the_timeline_of_a_diarized_upload(served, tmp_path):
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (Debian package `chromium`)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    import numpy as np
    import soundfile as sf

    url, _, _, chosen = served
    from tests.synth import RATE, voice

    gap = np.zeros(int(0.6 * RATE), np.float32)
    talk = tmp_path / "talk.wav"
    sf.write(talk, np.concatenate([voice(0, 50, 3.0), gap, voice(5, 50, 3.0), gap]), RATE)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url + "/")
        page.wait_for_selector("#speakers tr")
        page.check("#diarize")
        page.set_input_files("#file", str(talk))
        page.wait_for_selector("#timeline-result:not([hidden])", timeout=30_000)
        turns = page.locator("#timeline .turn")
        n = turns.count()
        left = [turns.nth(i).evaluate("e => parseFloat(e.style.left)") for i in range(n)]
        colours = {turns.nth(i).evaluate("e => e.style.background") for i in range(n)}
        items = page.locator("#turns li").all_inner_texts()
        voices = page.inner_text("#voices")
        browser.close()
    assert n == 2 and len(colours) == 2, (n, colours)
    assert left[0] == 0 and abs(left[1] - 100 * 3.6 / 7.2) < 2, left
    assert voices.startswith("2 voice(s)") and items[0].startswith("0:00.0")
