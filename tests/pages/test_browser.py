"""The pages in headless chromium (Debian's, driven by Playwright): search with filters, an
interaction's timeline (order, a diff, a gap), "as known at", and a live event arriving from
the simulator through the worker. Each test saves a screenshot under tests/artifacts/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.ingest.support import Sim, WorkerProcess, query, subscribed_since, wait_for, write_config
from tests.pages.conftest import ARTIFACTS, Site
from tests.pages.gws import Agent
from tests.pages.support import CASE, serving
from tests.simulator.support import fast_config


@pytest.fixture(scope="module")
def base_url(site: Site) -> Iterator[str]:
    with serving(site.app) as url:
        yield url


@pytest.fixture(scope="module")
def signed_in(browser: Any, base_url: str, site: Site) -> Iterator[Any]:
    """A browser context signed in once, through the login link `make demo` prints."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, timezone_id="Europe/Berlin"
    )
    page = context.new_page()
    page.goto(f"{base_url}/ui/login?token={site.tokens['reader']}")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Search")).to_be_visible()
    page.close()
    yield context
    context.close()


@pytest.fixture
def page(signed_in: Any, request: pytest.FixtureRequest) -> Iterator[Page]:
    opened: Page = signed_in.new_page()
    opened.set_default_timeout(10_000)
    yield opened
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name).strip("_")
    opened.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    opened.close()


def test_search_filters_interactions_by_media_type_and_state(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/ui/search")
    page.get_by_role("radio", name="Interactions").check()
    page.get_by_label("Media type").fill("workitem")
    state = page.get_by_label(re.compile("^State"))
    state.fill("Handling")
    state.press("Enter")  # the keyboard submits the form
    rows = page.locator("#results tbody tr")
    expect(rows).to_have_count(3)
    for text in rows.all_inner_texts():
        assert "workitem" in text
        assert "Handling" in text
    expect(page.get_by_text("Coverage")).not_to_have_count(0)


def test_timeline_shows_events_in_order_with_a_diff_and_a_gap(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/ui/search?what=interactions&mediaType=email")
    page.get_by_role("link", name=CASE).click()
    expect(page.get_by_role("heading", name=f"Interaction {CASE}")).to_be_visible()
    events = page.locator("ol#timeline > li.event")
    expect(events).to_have_count(7)
    ids = [int(i) for i in events.evaluate_all("els => els.map(e => e.dataset.eventId)")]
    assert ids == sorted(ids)
    changed = page.locator("tr.changed").first
    expect(changed).to_contain_text("tier")
    expect(changed).to_contain_text("platinum")
    gap = page.locator("ol#timeline > li.gap")
    expect(gap).to_have_count(1)
    expect(gap).to_contain_text("Coverage gap on account agent102")
    # the gap is drawn where it falls: after the error at +21 s, before the re-read at +95 s
    order = page.locator("ol#timeline > li").evaluate_all("els => els.map(e => e.className)")
    snapshot = next(i for i, c in enumerate(order) if "snapshot" in c)
    assert order.index("gap") == snapshot - 1
    assert "error" in order[snapshot - 2]
    # times in the viewer's zone (Berlin here), UTC on hover
    first_time = page.locator("ol#timeline time").first
    expect(first_time).to_have_attribute("title", re.compile("UTC$"))
    assert "UTC" not in first_time.inner_text()
    page.screenshot(path=str(ARTIFACTS / "timeline.png"), full_page=True)  # README's (docs/)
    # raw JSON opens from the keyboard
    summary = page.locator("details summary").first
    summary.focus()
    page.keyboard.press("Enter")
    expect(page.locator("details pre").first).to_be_visible()


def test_as_known_at_hides_events_stored_later(page: Page, base_url: str, site: Site) -> None:
    page.goto(f"{base_url}/ui/interactions/{CASE}")
    expect(page.locator("ol#timeline > li.event")).to_have_count(7)
    between = site.seeded.between.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    page.get_by_label("As known at").fill(between)
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#as-of-note")).to_be_visible()
    expect(page.locator("ol#timeline > li.event")).to_have_count(5)
    expect(page.locator("ol#timeline")).not_to_contain_text("Completed")


@pytest.mark.parametrize(
    "path",
    [
        f"/ui/interactions/{CASE}",
        "/ui/search?what=events&mediaType=email",
        "/ui/coverage?from=2026-11-02T08:00:00&to=2026-11-02T11:00:00",
        "/ui/overview",
    ],
)
def test_pages_work_360_px_wide_without_sideways_scrolling(
    signed_in: Any, base_url: str, path: str
) -> None:
    narrow = signed_in.new_page()
    narrow.set_viewport_size({"width": 360, "height": 740})
    try:
        narrow.goto(base_url + path)
        expect(narrow.locator("main h1")).to_be_visible()
        width = narrow.evaluate("document.documentElement.scrollWidth")
        assert width <= 360
        name = re.sub(r"[^A-Za-z0-9]+", "_", path.split("?")[0]).strip("_")
        narrow.screenshot(path=str(ARTIFACTS / f"360px-{name}.png"), full_page=True)
    finally:
        narrow.close()


@pytest.fixture(scope="module")
def gws(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The simulator and the worker recording agent001 into the pages' database."""
    tmp: Path = tmp_path_factory.mktemp("live")
    with Sim(fast_config(agents=1, rate=0)) as sim:
        config = write_config(tmp / "worker.toml", sim.url, ["agent001"], tmp / "spool.sqlite3")
        since = datetime.now(UTC)
        worker = WorkerProcess(config, site.url, tmp / "worker.log").start()
        try:
            wait_for(
                "the worker's subscription", lambda: subscribed_since(site.url, ["agent001"], since)
            )
            yield sim.url
        finally:
            worker.terminate()


def _stored(site: Site, reference_id: int) -> list[tuple[Any, ...]]:
    return query(
        site.url,
        "SELECT id, interaction_id FROM events WHERE account = 'agent001' AND reference_id = %s",
        (str(reference_id),),
    )


def test_a_live_event_appears_after_the_simulator_emits_it(
    page: Page, base_url: str, site: Site, gws: str
) -> None:
    agent = Agent(gws, "agent001")
    created = agent.post(
        "/api/v2/me/openmedia/workitem",
        {"operationName": "Create", "queueUri": "http://x/api/v2/queues/q1"},
    )
    wait_for("the created item stored", lambda: bool(_stored(site, created["referenceId"])))
    item = _stored(site, created["referenceId"])[0][1]
    page.goto(f"{base_url}/ui/interactions/{item}")
    events = page.locator("ol#timeline > li.event")
    expect(events).to_have_count(1)
    assert page.locator("ol#timeline").get_attribute("data-live")
    attached = agent.post(
        f"/api/v2/me/openmedia/workitem/{item}",
        {"operationName": "AttachUserData", "userData": {"CaseNumber": "4711"}},
    )
    wait_for("the update stored", lambda: bool(_stored(site, attached["referenceId"])))
    started = time.monotonic()
    arrived = page.locator(f"#e{_stored(site, attached['referenceId'])[0][0]}")
    expect(arrived).to_be_visible()
    expect(arrived.locator("tr.added")).to_contain_text("CaseNumber")
    expect(events).to_have_count(2)
    expect(page.locator("#live-status")).to_contain_text("arrived")
    print(f"live event shown {time.monotonic() - started:.2f} s after it was stored")


A11Y = (Path(__file__).parent / "a11y.js").read_text()


@pytest.mark.parametrize(
    "path",
    [
        "/ui/search?what=events&mediaType=email",
        f"/ui/interactions/{CASE}",
        "/ui/coverage?from=2026-11-02T08:00:00&to=2026-11-02T11:00:00",
        "/ui/overview",
    ],
)
def test_pages_pass_aa_contrast_and_label_every_control(
    page: Page, base_url: str, path: str
) -> None:
    page.goto(base_url + path)
    page.locator("details").evaluate_all("els => els.forEach(d => d.open = true)")
    found = page.evaluate(A11Y)
    assert found == {"contrast": [], "unlabelled": []}


def test_every_search_control_is_reached_with_the_keyboard(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/ui/search")
    controls = page.locator("main input:not([type=hidden]), main select, main button")
    wanted = set(controls.evaluate_all("els => els.map(e => e.id || e.name + '=' + e.value)"))
    reached = set()
    for _ in range(60):
        page.keyboard.press("Tab")
        reached.add(
            page.evaluate(
                "() => { const e = document.activeElement; return e.id || e.name + '=' + e.value; }"
            )
        )
    # radio buttons form one tab stop; the arrow keys move within the group
    assert wanted - reached <= {"what=events"}


def test_coverage_page_draws_connected_time_and_gaps(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/ui/coverage")
    page.get_by_label(re.compile("^From")).fill("2026-11-02T08:30:00")
    page.get_by_label(re.compile("^To")).fill("2026-11-02T10:30:00")
    page.get_by_role("button", name="Show").click()
    chart = page.locator("svg#coverage-chart")
    expect(chart).to_be_visible()
    expect(chart.locator("rect.gap")).not_to_have_count(0)
    expect(page.locator("#coverage-table")).to_contain_text("agent102")


def test_overview_page_draws_volumes_by_media_type_and_state(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/ui/overview")
    page.get_by_label("Range", exact=True).select_option("90d")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("svg#media-chart")).to_be_visible()
    expect(page.locator("figure").first).to_contain_text("email")
    expect(page.locator("figure").nth(1)).to_contain_text("Handling")


def test_load_more_appends_the_next_page_of_a_long_timeline(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/ui/interactions/{CASE}?limit=3")
    events = page.locator("ol#timeline > li.event")
    expect(events).to_have_count(3)
    page.get_by_role("link", name="Load more events").click()
    expect(events).to_have_count(6)
    page.get_by_role("link", name="Load more events").click()
    expect(events).to_have_count(7)
    expect(page.get_by_role("link", name="Load more events")).to_have_count(0)
    expect(page.locator("ol#timeline > li.gap")).to_have_count(1)
    ids = [int(i) for i in events.evaluate_all("els => els.map(e => e.dataset.eventId)")]
    assert ids == sorted(ids)
    assert page.url.endswith("limit=3")  # appended in place, not a new page
    expect(page.locator("#live-status")).to_be_visible()
