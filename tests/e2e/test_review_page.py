"""The moderator review page in headless Chromium against the running stack (gunicorn + a real Celery
worker): sign in with a moderator key, open a job from the queue, label it, and find the label in Postgres.
Screenshots go to artifacts/screenshots/. Also: /metrics, /readyz and the JSON logs of the live processes.

Chromium is Debian's (/usr/bin/chromium, installed by ./verity test); Playwright only drives it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from client.api import VerityClient
from client.stream_cli import video_frames
from client.streams import open_stream
from db.heartbeat import HEARTBEAT_INTERVAL_S
from tests.conftest import REPO, Keys, bearer, shared_file
from tests.e2e.conftest import Stack, submit, wait_ready, wait_terminal
from tests.support.images import FACE_CLIP, first_frame, save_still

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
CLIP = "videos/fake/sberswap_elon.mp4"


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def moderator_page(browser: Any, stack: Stack, keys: Keys) -> tuple[Any, list[str]]:
    """A page signed in with the moderator key, and the page errors and failed responses it will record."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(f"{stack.base}/review")
    page.fill("#key", keys.moderator)
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#content")).to_be_visible()
    return page, problems


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: apt-get install chromium chromium-driver (./verity test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def finished_job(stack: Stack, keys: Keys) -> dict[str, Any]:
    clip = shared_file(CLIP)
    job = submit(stack, keys.submitter, clip, name=clip.name, max_frames="4")
    done = wait_terminal(stack, keys.submitter, job["id"])
    assert done["status"] == "SUCCEEDED", done
    result: dict[str, Any] = requests.get(
        f"{stack.base}/v1/jobs/{job['id']}/result", headers=bearer(keys.submitter), timeout=10
    ).json()
    return result


def test_moderator_labels_a_job_in_the_browser(
    stack: Stack, keys: Keys, browser: Any, finished_job: dict[str, Any]
) -> None:
    from playwright.sync_api import expect

    from db.models import Feedback
    from db.session import session_scope

    job_id = finished_job["job_id"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    media: list[int] = []
    page.on("response", lambda r: media.append(r.status) if "/video?token=" in r.url else None)

    page.goto(f"{stack.base}/review")
    expect(page.locator("#sign-in")).to_be_visible()
    page.fill("#key", keys.submitter)
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#sign-in-error")).to_contain_text("moderator role")
    assert [p.split("?")[0] for p in problems] == [f"403 {stack.base}/v1/review/queue"]
    problems.clear()

    page.fill("#key", keys.moderator)
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#content")).to_be_visible()
    link = page.locator(f"#recent a[href='/review/jobs/{job_id}']")
    expect(link).to_be_visible()
    queue_shot = SCREENSHOTS / "review-queue.png"
    page.screenshot(path=str(queue_shot), full_page=True)

    link.click()
    page.wait_for_url(f"**/review/jobs/{job_id}")
    expect(page.locator("#verdict .badge")).to_have_text(finished_job["verdict"])
    expect(page.locator("#models .model")).to_have_count(len(finished_job["models"]))
    # Polled through locator.evaluate: wait_for_function would eval a string, which the page's CSP forbids.
    wait_until(lambda: page.locator("#timeline").evaluate("img => img.naturalWidth") > 0, "the timeline PNG")
    wait_until(lambda: page.locator("#frames").evaluate("img => img.naturalWidth") > 0, "the sampled frames")
    # This clip is MPEG-4 Part 2, which Chromium does not decode: the page must say so and offer the file.
    playable = "v => v.readyState >= 2 || !document.getElementById('video-note').hidden"
    wait_until(lambda: page.locator("#video").evaluate(playable), "the video to play or be explained")
    assert media and all(status in (200, 206) for status in media), media

    page.select_option("#category", "FALSE_NEGATIVE")
    page.fill("#note", "face swap: blending seam at the jaw")
    page.click("#label-FAKE")
    expect(page.locator("#feedback-status")).to_contain_text("Saved: FAKE")
    expect(page.locator("#feedback-history li").first).to_contain_text("blending seam")
    job_shot = SCREENSHOTS / "review-job.png"
    page.screenshot(path=str(job_shot), full_page=True)
    page.close()

    with session_scope() as s:
        rows = s.scalars(
            select(Feedback).where(Feedback.job_id == uuid.UUID(job_id), Feedback.is_current.is_(True))
        ).all()
        assert [(f.label, f.category, f.note, f.tenant) for f in rows] == [
            ("FAKE", "FALSE_NEGATIVE", "face swap: blending seam at the jaw", "acme")
        ]
    assert not problems, problems
    print(f"\nreview screenshots: {queue_shot} {job_shot}")


def test_an_image_shows_with_its_face_boxes(stack: Stack, keys: Keys, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    still = save_still(first_frame(shared_file(FACE_CLIP)), tmp_path / "face.webp")
    job = submit(stack, keys.submitter, still, name=still.name)
    assert wait_terminal(stack, keys.submitter, job["id"])["status"] == "SUCCEEDED"
    url = f"{stack.base}/v1/jobs/{job['id']}/result"
    result = requests.get(url, headers=bearer(keys.submitter), timeout=10).json()
    assert result["media"] == "image" and result["faces_found"] >= 1

    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.goto(f"{stack.base}/review")
    page.fill("#key", keys.moderator)
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#content")).to_be_visible()
    page.goto(f"{stack.base}/review/jobs/{job['id']}")
    expect(page.locator("#media-title")).to_have_text("Image")
    wait_until(lambda: page.locator("#still").evaluate("img => img.naturalWidth") > 0, "the image")
    expect(page.locator("#still-wrap .face-box")).to_have_count(result["faces_found"])
    wait_until(lambda: page.locator("#frames").evaluate("img => img.naturalWidth") > 0, "the sampled frame")
    expect(page.locator("#still-wrap .face-box").first).to_be_visible()  # the page shows once all has loaded
    expect(page.locator("#video")).to_be_hidden()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "review-image.png"), full_page=True)
    page.close()


def test_live_metrics_readiness_and_json_logs(stack: Stack, finished_job: dict[str, Any]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    ready = requests.get(f"{stack.base}/readyz", timeout=10).json()
    assert ready["checks"]["workers"] == "ok", ready

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = requests.get(f"{stack.base}/metrics", timeout=10).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    # The worker reports its model load time with its next heartbeat after loading.
    def loaded() -> bool:
        return any(name == "verity_model_load_seconds" for name, _ in scrape())

    wait_until(loaded, "the worker's model load time", timeout_s=HEARTBEAT_INTERVAL_S + 10)
    samples = scrape()
    assert samples[("verity_jobs", (("status", "SUCCEEDED"),))] >= 1
    assert samples[("verity_worker_processes", (("queue", "gpu"),))] >= 1
    assert samples[("verity_stage_duration_seconds_gcount", (("stage", "decode"),))] >= 1
    assert ("verity_queue_depth", (("queue", "gpu"),)) in samples

    # Postgres in the stack, so both processes log JSON; the job id is bound in each.
    job_id = finished_job["job_id"]
    for log in ("api.log", "worker.log"):
        lines = [json.loads(x) for x in (stack.logs / log).read_text().splitlines() if x.startswith("{")]
        assert any(x.get("job_id") == job_id for x in lines), f"no JSON line with job_id in {log}"


def test_heatmaps_show_on_the_review_page(stack: Stack, keys: Keys, browser: Any) -> None:
    from playwright.sync_api import expect

    clip = shared_file(FACE_CLIP)
    job = submit(stack, keys.submitter, clip, name=clip.name, max_frames="4", explain="true")
    assert wait_terminal(stack, keys.submitter, job["id"])["status"] == "SUCCEEDED"
    url = f"{stack.base}/v1/jobs/{job['id']}/heatmaps"
    heatmaps = requests.get(url, headers=bearer(keys.submitter), timeout=10).json()["heatmaps"]
    assert heatmaps and all(h["url"] for h in heatmaps)

    page, problems = moderator_page(browser, stack, keys)
    page.goto(f"{stack.base}/review/jobs/{job['id']}")
    expect(page.locator("#heatmaps-card")).to_be_visible()
    images = page.locator("#heatmaps .heatmap-img")
    expect(images).to_have_count(len(heatmaps))
    loaded = "imgs => imgs.every((img) => img.naturalWidth > 0)"
    wait_until(lambda: bool(images.evaluate_all(loaded)), "every heatmap PNG")
    expect(page.locator("#heatmaps figcaption").first).to_contain_text(heatmaps[0]["member"])
    page.locator("#heatmaps-card").scroll_into_view_if_needed()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "review-heatmaps.png"
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    assert not problems, problems
    print(f"\nheatmaps screenshot: {shot}")


def test_a_stream_shows_its_decision_timeline(stack: Stack, keys: Keys, browser: Any) -> None:
    from playwright.sync_api import expect

    wait_ready(stack.logs, "streams")
    frames = list(video_frames(str(shared_file("videos/real/ffpp_004.mp4")), 2.0, 8))
    with VerityClient(stack.base, keys.submitter, timeout=60) as client:
        stream = open_stream(client, {"kind": "per_frame", "window": 4, "min_frames": 2})
        for start in range(0, len(frames), 2):
            stream.post_frames(frames[start : start + 2])
        wait_until(lambda: stream.refresh()["frames"]["scored"] == len(frames), "every frame scored", 180)
        closed = stream.close()
    assert closed["status"] == "closed" and closed["decision"]["changes"] >= 1

    page, problems = moderator_page(browser, stack, keys)
    page.goto(f"{stack.base}/review/jobs/{stream.id}")
    expect(page.locator("#stream-card")).to_be_visible()
    # The score line, both thresholds, and one marker and one list entry per decision change.
    expect(page.locator("#stream-timeline polyline.score")).to_have_count(1)
    expect(page.locator("#stream-timeline line.threshold")).to_have_count(2)
    expect(page.locator("#stream-timeline circle.change")).to_have_count(closed["decision"]["changes"])
    expect(page.locator("#stream-changes li")).to_have_count(closed["decision"]["changes"])
    page.locator("#stream-card").scroll_into_view_if_needed()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "review-stream.png"
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    assert not problems, problems
    print(f"\nstream timeline screenshot: {shot}")
