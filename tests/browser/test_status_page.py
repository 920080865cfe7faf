"""The status page in a real browser: Debian's chromium driven by Playwright, against a real worker.

A `helios worker` on the real broker is fed by the synthetic ingester of `make run` (its incident
included) at high speed: 600 steps of 60 s, so the 6 h ring is full, with the incident 150 steps before
the end. The tests load the pages as a person would and check what they show: no console error (a
Content-Security-Policy violation is one), no request leaves the worker, the charts are drawn, the
incident is a detection on the anomaly chart (its markers' pixels, at the incident's windows) and a
``scale_up`` in the recommendation list. A screenshot and the render time go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, free_port
from tests.helpers import Worker, metric_value, topic_env

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
NS, DEP = "saleor", "saleor-api"
STEP = 60
#: More steps than the default ring holds (6 h at 60 s = 360), so the page shows a full ring.
COUNT = 600
INCIDENT_AT = 450
#: The feed's last event time: fixed, so the daily cycle around the incident (here the night trough,
#: 04:00 UTC) is the same whenever the suite runs; ending at "now" put it on any hour, next to a ramp's
#: scale-ups at some of them.
FEED_END = "2026-12-01T06:30:00+00:00"
#: The incident's steps (SaleorWorkload's default) and the detection hold after it (HELIOS_ANOMALY_HOLD).
INCIDENT_STEPS = 15
HOLD_STEPS = 5
TOKEN = "status-page-test-token"


def launch(playwright: Any) -> Any:
    # Root in a container has no user namespace for chromium's sandbox.
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(
                f"{CHROMIUM} is missing in CI: scripts/system-deps installs it (apt-get install chromium)"
            )
        pytest.skip(f"{CHROMIUM} not installed (Debian package chromium; scripts/system-deps installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        b = launch(playwright)
        try:
            yield b
        finally:
            b.close()


def start_worker(kafka_bootstrap: str, folder: Path, **extra: str) -> tuple[Worker, dict[str, str]]:
    env = {
        **topic_env(uuid.uuid4().hex[:10]),
        "HELIOS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "HELIOS_SCORING_INTERVAL": str(STEP),
        "HELIOS_DATA_DIR": str(folder / "data"),
        **extra,
    }
    return Worker(env, free_port(), folder / "worker.log").start(), env


@pytest.fixture(scope="module")
def fed(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A worker that has processed make run's synthetic feed, incident included."""
    folder = tmp_path_factory.mktemp("status-page")
    worker, env = start_worker(kafka_bootstrap, folder)
    try:
        cmd = [sys.executable, "-m", "pipeline.cli", "ingest", "--source", "synthetic", "--rate", "400"]
        cmd += ["--count", str(COUNT), "--incident-at", str(INCIDENT_AT), "--end", FEED_END]
        with (folder / "ingest.log").open("ab") as log:
            subprocess.run(
                cmd, env={**os.environ, **env}, cwd=REPO, check=True, timeout=180, stdout=log, stderr=log
            )

        def processed() -> bool:
            done = metric_value(worker.metrics(), "helios_samples_total", outcome="processed")
            return done is not None and done >= COUNT

        worker.wait_for(processed, 120, f"done with the {COUNT} samples")
        yield worker
    finally:
        worker.terminate()


class Visit:
    """A page in a fresh browser context, with what went wrong on it."""

    def __init__(self, browser: Any, base: str, **context: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1300, "height": 900}, **context)
        self.page = self.context.new_page()
        self.base = base
        self.errors: list[str] = []
        self.foreign: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("request", self._request)

    def _request(self, request: Any) -> None:
        if not (request.url.startswith(self.base) or request.url.startswith("data:")):
            self.foreign.append(request.url)

    def open(self, path: str) -> Any:
        response = self.page.goto(self.base + path)
        return response

    def close(self) -> None:
        self.context.close()


def base_url(worker: Worker) -> str:
    return f"http://127.0.0.1:{worker.port}"


def history(worker: Worker) -> dict[str, Any]:
    status, body = worker.get(f"/deployments/{NS}/{DEP}/history")
    assert status == 200, body[:300]
    data: dict[str, Any] = json.loads(body)
    return data


def incident_windows(data: dict[str, Any]) -> tuple[int, int]:
    """Event times of the incident's first window and of the last one its detection may be held to."""
    present = [t for t, a in zip(data["t"], data["series"]["action"], strict=True) if a is not None]
    first = present[-1] - (COUNT - 1 - INCIDENT_AT) * STEP
    return first, first + (INCIDENT_STEPS + HOLD_STEPS) * STEP


PAINTED = """(canvas) => {
  const {width, height} = canvas;
  const px = canvas.getContext('2d').getImageData(0, 0, width, height).data;
  let any = 0, warning = 0, critical = 0;
  for (let i = 0; i < px.length; i += 4) {
    const [r, g, b, a] = [px[i], px[i + 1], px[i + 2], px[i + 3]];
    if (a < 128) continue;
    any++;
    if (r > 190 && g < 80 && b < 80) critical++;
    if (r > 220 && g > 110 && g < 160 && b < 60) warning++;
  }
  return {any, warning, critical};
}"""


def test_the_index_lists_the_deployment_with_its_state(browser: Any, fed: Worker) -> None:
    visit = Visit(browser, base_url(fed))
    try:
        response = visit.open("/")
        assert response.status == 200
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, csp
        row = visit.page.locator(f'#deployments tr[data-key="{NS}/{DEP}"]')
        assert row.count() == 1
        cells = row.locator("td").all_inner_texts()
        assert cells[0] == f"{NS}/{DEP}"
        assert cells[1].isdigit() and cells[2].isdigit(), cells  # replicas now and recommended
        assert cells[3] in ("normal", "warning", "critical"), cells
        visit.page.fill("#filter", "no-such-thing")
        assert row.is_hidden()
        visit.page.fill("#filter", DEP[:4])
        assert row.is_visible()
        row.locator("a").click()
        visit.page.wait_for_selector("body[data-ready-at]")
        assert visit.page.url == f"{visit.base}/deployments/{NS}/{DEP}"
        assert visit.errors == [] and visit.foreign == [], (visit.errors, visit.foreign)
    finally:
        visit.close()


def test_the_deployment_page_shows_the_incident(browser: Any, fed: Worker) -> None:
    data = history(fed)
    first, last = incident_windows(data)
    visit = Visit(browser, base_url(fed))
    try:
        response = visit.open(f"/deployments/{NS}/{DEP}")
        assert response.status == 200
        visit.page.wait_for_selector("body[data-ready-at]", timeout=20_000)
        ready_ms = float(visit.page.evaluate("document.body.dataset.readyAt"))
        for name in ("cpu", "memory", "anomaly", "replicas"):
            canvas = visit.page.locator(f"#chart-{name} canvas").first
            painted = canvas.evaluate(PAINTED)
            assert painted["any"] > 2000, (name, painted)  # lines and bands, not an empty frame
        anomaly = visit.page.locator("#chart-anomaly")
        marks = anomaly.locator("canvas").first.evaluate(PAINTED)
        assert marks["critical"] + marks["warning"] > 30, marks  # detection markers are on the chart
        times = [int(t) for t in (anomaly.get_attribute("data-detection-times") or "").split(",") if t]
        assert any(first <= t <= last for t in times), (first, last, times)
        rows = visit.page.locator('#recommendations tbody tr[data-action="scale_up"]')
        ups = [int(t) for t in rows.evaluate_all("rows => rows.map(r => r.dataset.t)")]
        assert any(first <= t <= last for t in ups), (first, last, ups)
        assert "scale_up" in rows.first.inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        visit.page.screenshot(path=str(ARTIFACTS / "status-page.png"), full_page=True)
        assert (ARTIFACTS / "status-page.png").stat().st_size > 20_000
        windows = sum(1 for a in data["series"]["action"] if a is not None)
        timing = {"ready_ms_after_navigation": ready_ms, "windows": windows, "step_seconds": STEP}
        (ARTIFACTS / "status-page-timing.json").write_text(json.dumps(timing, indent=2) + "\n")
        print(f"\nstatus page: drawn {ready_ms:.0f} ms after navigation with {windows} windows of {STEP} s")
        assert windows >= 350  # the measurement is of a full 6 h ring
        assert visit.errors == [] and visit.foreign == [], (visit.errors, visit.foreign)
    finally:
        visit.close()


def test_the_page_polls_and_its_window_can_be_narrowed(browser: Any, fed: Worker) -> None:
    visit = Visit(browser, base_url(fed))
    try:
        visit.open(f"/deployments/{NS}/{DEP}")
        visit.page.wait_for_selector("body[data-ready-at]")
        with visit.page.expect_response(lambda r: "/history?window=3600" in r.url) as narrowed:
            visit.page.select_option("#window", "3600")
        body = narrowed.value.json()
        assert len(body["t"]) == 3600 // STEP + max(h["seconds"] for h in body["forecast"].values()) // STEP
        with visit.page.expect_response(lambda r: "/history" in r.url, timeout=15_000) as polled:
            pass  # the page polls every 5 s by itself
        assert polled.value.status == 200
        assert visit.errors == [], visit.errors
    finally:
        visit.close()


def test_with_a_token_the_pages_need_it_and_a_cookie_stands_for_it(
    browser: Any, kafka_bootstrap: str, tmp_path: Path
) -> None:
    worker, _ = start_worker(kafka_bootstrap, tmp_path, HELIOS_API_TOKEN=TOKEN)
    try:
        status, body = worker.get("/")
        assert status == 401 and b'name="token"' in body
        status, body = worker.get(f"/deployments/{NS}/{DEP}/history")
        assert status == 401 and b"HELIOS_API_TOKEN" in body
        status, _ = worker.request(
            "GET", f"/deployments/{NS}/{DEP}/history", headers={"Authorization": "Bearer x"}
        )
        assert status == 401
        status, body = worker.request(
            "GET", f"/deployments/{NS}/{DEP}/history", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert status == 404, body  # let in: this worker just has no such deployment
        visit = Visit(browser, base_url(worker))
        try:
            response = visit.open("/?token=wrong")
            assert response.status == 401
            visit.page.fill('input[name="token"]', TOKEN)
            visit.page.click('button[type="submit"]')
            visit.page.wait_for_selector("#deployments")
            assert visit.page.url == visit.base + "/"  # the token is not left in the address bar
            cookies = {c["name"]: c for c in visit.context.cookies()}
            assert cookies["helios_session"]["httpOnly"] and TOKEN not in cookies["helios_session"]["value"]
            again = visit.context.request.get(f"{visit.base}/deployments/{NS}/{DEP}/history")
            assert again.status == 404  # the cookie lets the page's own requests in
        finally:
            visit.close()
    finally:
        worker.terminate()


def test_a_browser_holding_a_static_file_is_answered_304_and_polls_get_the_same_history(fed: Worker) -> None:
    status, body = fed.get("/static/status.js")
    assert status == 200 and body
    # Worker.get returns no headers: read the ETag off a plain request.
    with urllib.request.urlopen(f"{base_url(fed)}/static/status.js", timeout=10) as resp:
        etag = resp.headers["ETag"]
    assert etag and etag.startswith('"')
    status, body = fed.request("GET", "/static/status.js", headers={"If-None-Match": etag})
    assert status == 304 and body == b""
    status, body = fed.request("GET", "/static/status.js", headers={"If-None-Match": '"other"'})
    assert status == 200 and body
    # The feed is done: two polls see the same output, so the same bytes (built once).
    first, second = fed.get(f"/deployments/{NS}/{DEP}/history"), fed.get(f"/deployments/{NS}/{DEP}/history")
    assert first[0] == 200 and first == second
