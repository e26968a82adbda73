"""The pages over HTTP (no browser, no JavaScript): sign-in, cookie and CSRF rules, the access
log, search, the timeline (paged, as known at), the live tail's answers, bad input."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

import psycopg

from auditor.config import ApiSettings, Settings, libpq_conninfo
from auditor.store.writer import store_batch
from tests.helpers import T0, om_message, receipt
from tests.logins import as_login
from tests.pages.conftest import Site, csrf_of
from tests.pages.support import A2, CASE
from web import create_app


def test_pages_need_a_signed_in_token_and_send_to_the_login_form(site: Site) -> None:
    answer = site.client().get("/ui/search?what=events&state=Handling")
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/ui/login?next=")
    assert "state%3DHandling" in answer.headers["Location"]


def test_sign_in_sets_an_httponly_samesite_strict_cookie_without_secure_over_http(
    site: Site,
) -> None:
    client = site.client()
    csrf = csrf_of(client.get("/ui/login").get_data(as_text=True))
    answer = client.post(
        "/ui/login",
        data={"token": site.tokens["reader"], "csrf_token": csrf, "next": "/ui/coverage"},
    )
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/ui/coverage"
    cookie = next(c for c in answer.headers.getlist("Set-Cookie") if "auditor_ui_token=" in c)
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/ui" in cookie
    assert "Secure" not in cookie
    assert client.get("/ui/coverage").status_code == 200


def test_the_cookies_are_secure_when_served_over_tls(site: Site) -> None:
    client = site.app.test_client()
    page = client.get("/ui/login", base_url="https://localhost")
    session_cookie = next(
        c for c in page.headers.getlist("Set-Cookie") if "auditor_ui_session" in c
    )
    assert "Secure" in session_cookie
    assert "SameSite=Strict" in session_cookie
    answer = client.post(
        "/ui/login",
        base_url="https://localhost",
        data={"token": site.tokens["reader"], "csrf_token": csrf_of(page.get_data(as_text=True))},
    )
    cookie = next(c for c in answer.headers.getlist("Set-Cookie") if "auditor_ui_token=" in c)
    assert "Secure" in cookie


def test_sign_in_without_the_csrf_token_is_refused(site: Site) -> None:
    client = site.client()
    client.get("/ui/login")
    answer = client.post("/ui/login", data={"token": site.tokens["reader"]})
    assert answer.status_code == 400
    assert "auditor_ui_token=" not in " ".join(answer.headers.getlist("Set-Cookie"))
    forged = client.post("/ui/login", data={"token": site.tokens["reader"], "csrf_token": "x.y.z"})
    assert forged.status_code == 400


def test_a_wrong_token_is_refused_and_counted(site: Site) -> None:
    client = site.client()
    csrf = csrf_of(client.get("/ui/login").get_data(as_text=True))
    answer = client.post("/ui/login", data={"token": "aud_" + "x" * 43, "csrf_token": csrf})
    assert answer.status_code == 401
    assert "unknown or revoked" in answer.get_data(as_text=True)


def test_sign_out_needs_csrf_and_clears_the_cookie(site: Site) -> None:
    client = site.signed_in()
    assert client.post("/ui/logout").status_code == 400
    page = client.get("/ui/search").get_data(as_text=True)
    answer = client.post("/ui/logout", data={"csrf_token": csrf_of(page)})
    assert answer.status_code == 303
    cleared = next(c for c in answer.headers.getlist("Set-Cookie") if "auditor_ui_token=" in c)
    assert "Expires=Thu, 01 Jan 1970" in cleared
    assert client.get("/ui/search").status_code == 303


def test_the_next_page_after_sign_in_is_never_another_site(site: Site) -> None:
    client = site.client()
    for target in ("//evil.example/x", "https://evil.example/ui/", "/elsewhere", "/ui\\..\\x"):
        csrf = csrf_of(client.get("/ui/login").get_data(as_text=True))
        answer = client.post(
            "/ui/login",
            data={"token": site.tokens["reader"], "csrf_token": csrf, "next": target},
        )
        assert answer.headers["Location"] == "/ui/", target


def test_every_page_view_is_in_the_access_log(site: Site) -> None:
    client = site.signed_in()
    marker = f"M{datetime.now(UTC).timestamp():.6f}"
    assert client.get(f"/ui/search?what=events&account={marker}").status_code == 200
    assert client.get(f"/ui/interactions/{CASE}").status_code == 200
    anonymous = site.client().get(f"/ui/coverage?account={marker}")
    assert anonymous.status_code == 303
    with site.db() as conn:
        rows = conn.execute(
            "SELECT token_name, role, method, endpoint, filters, status FROM access_log"
            " WHERE endpoint LIKE '/ui/%%' ORDER BY id DESC LIMIT 20"
        ).fetchall()
    assert (
        "pages-reader",
        "reader",
        "GET",
        "/ui/search",
        {"what": "events", "account": marker},
        200,
    ) in rows
    assert ("pages-reader", "reader", "GET", f"/ui/interactions/{CASE}", {}, 200) in rows
    assert (None, None, "GET", "/ui/coverage", {"account": marker}, 303) in rows


def test_a_login_link_only_fills_the_form_and_its_token_is_redacted_in_the_log(site: Site) -> None:
    client = site.client()
    page = client.get(f"/ui/login?token={site.tokens['reader']}")
    assert page.status_code == 200
    assert "auditor_ui_token=" not in " ".join(page.headers.getlist("Set-Cookie"))
    with site.db() as conn:
        logged = conn.execute(
            "SELECT filters FROM access_log WHERE endpoint = '/ui/login' ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert logged is not None
    assert site.tokens["reader"] not in str(logged[0])


def _rows(html: str) -> list[str]:
    body = html.split('id="results"', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)


def test_search_filters_interactions_by_media_type_and_state(site: Site) -> None:
    client = site.signed_in()
    html = client.get("/ui/search?what=interactions&mediaType=workitem&state=Handling").get_data(
        as_text=True
    )
    rows = _rows(html)
    assert len(rows) == 3
    assert all("workitem" in r and "Handling" in r for r in rows)
    assert 'href="/ui/interactions/WI-0"' in html


def test_search_pages_with_a_cursor_and_states_coverage(site: Site) -> None:
    client = site.signed_in()
    start = (T0 - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")
    first = client.get(f"/ui/search?what=events&account={A2}&from={start}&limit=2&order=oldest")
    html = first.get_data(as_text=True)
    assert len(_rows(html)) == 2
    assert "Coverage has gaps" in html  # agent102 was not listened to for a minute
    link = re.search(r'rel="next" href="([^"]+)"', html)
    assert link is not None
    second = client.get(link.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert len(_rows(second)) == 2
    assert set(_rows(html)).isdisjoint(_rows(second))


def test_search_names_bad_fields_on_the_page(site: Site) -> None:
    client = site.signed_in()
    answer = client.get("/ui/search?what=events&from=yesterday")
    assert answer.status_code == 400
    assert "<code>from</code>" in answer.get_data(as_text=True)
    misplaced = client.get("/ui/search?what=interactions&referenceId=7")
    assert misplaced.status_code == 400


def test_timeline_without_javascript_shows_every_kind_of_entry_in_order(site: Site) -> None:
    html = site.signed_in().get(f"/ui/interactions/{CASE}").get_data(as_text=True)
    ids = [int(i) for i in re.findall(r'data-event-id="([0-9]+)"', html)]
    assert len(ids) == 7
    assert ids == sorted(ids)
    assert html.count('class="gap"') == 1
    assert 'class="changed"' in html
    assert 'class="added"' in html
    assert "State changed: Routing → <strong>Handling</strong>" in html
    assert "Snapshot: state re-read after a gap" in html
    assert html.index('class="gap"') < html.index("Snapshot: state re-read")
    error = html.split("Error 1203", 1)[1]
    assert re.search(r'answers <a href="#e([0-9]+)">the operation', error)
    assert "<details><summary>Raw JSON of event" in html
    assert 'class="removed"' in html  # the late Completed dropped tier and customer


def test_timeline_as_known_at_hides_rows_stored_later(site: Site) -> None:
    between = site.seeded.between.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    html = site.signed_in().get(f"/ui/interactions/{CASE}?as_of={between}").get_data(as_text=True)
    assert len(re.findall(r'data-event-id="', html)) == 5
    assert "Completed" not in html.split('id="timeline"', 1)[1]
    assert "data-live=" not in html  # no live tail into the past


def test_timeline_pages_and_never_sends_everything_at_once(site: Site) -> None:
    client = site.signed_in()
    first = client.get(f"/ui/interactions/{CASE}?limit=4").get_data(as_text=True)
    assert len(re.findall(r'data-event-id="', first)) == 4
    more = re.search(r'id="load-more" href="([^"]+)"', first)
    assert more is not None
    assert "data-live=" not in first
    rest = client.get(more.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert len(re.findall(r'data-event-id="', rest)) == 3
    assert "data-live=" in rest
    assert client.get(f"/ui/interactions/{CASE}?limit=5000").status_code == 400


def test_live_answers_are_short_and_resume_after_the_last_event_id(site: Site) -> None:
    client = site.signed_in()
    html = client.get(f"/ui/interactions/{CASE}").get_data(as_text=True)
    ids = [int(i) for i in re.findall(r'data-event-id="([0-9]+)"', html)]
    answer = client.get(f"/ui/interactions/{CASE}/live", headers={"Last-Event-ID": str(ids[3])})
    assert answer.status_code == 200
    assert answer.mimetype == "text/event-stream"
    body = answer.get_data(as_text=True)
    assert body.startswith("retry: ")
    assert re.findall(r"^id: ([0-9]+)$", body, flags=re.M) == [str(i) for i in ids[4:]]
    nothing = client.get(f"/ui/interactions/{CASE}/live?after={ids[-1]}").get_data(as_text=True)
    assert "id:" not in nothing
    assert nothing.startswith("retry: ")


def test_pages_load_nothing_from_other_sites_and_carry_a_strict_csp(site: Site) -> None:
    client = site.signed_in()
    for path in ("/ui/search", f"/ui/interactions/{CASE}", "/ui/coverage", "/ui/overview"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        csp = answer.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp
        assert "default-src 'none'" in csp
        html = answer.get_data(as_text=True)
        assert not re.search(r'(src|href)="(https?:)?//', html), path


def test_a_bad_parameter_is_a_page_naming_it(site: Site) -> None:
    client = site.signed_in()
    answer = client.get(f"/ui/interactions/{CASE}?as_of=2999-01-01T00:00:00")
    assert answer.status_code == 400
    assert "as_of" in answer.get_data(as_text=True)
    assert client.get("/ui/interactions/nope").status_code == 404
    assert client.get("/ui/overview?range=1y").status_code == 400


def test_search_by_user_data_current_exact_prefix_and_ever(site: Site) -> None:
    client = site.signed_in()

    def found(query: str) -> list[str]:
        html = client.get(f"/ui/search?{query}").get_data(as_text=True)
        return re.findall(r'href="/ui/interactions/([^"?#]+)', html.split('id="results"', 1)[1])

    assert found("what=interactions&udk1=case&udv1=4711") == [CASE]
    assert found("what=interactions&udk1=case&udv1=%5E47") == [CASE]
    assert found("what=interactions&udk1=tier&udv1=gold") == []  # not its current value
    assert found("what=interactions&udk1=tier&udv1=gold&ever=true") == [CASE]
    events = found("what=events&udk1=tier&udv1=platinum")
    assert len(events) == 1  # the value at that event
    bad = client.get("/ui/search?what=events&udk1=-bad&udv1=x")
    assert bad.status_code == 400
    assert "userData.-bad" in bad.get_data(as_text=True)


def test_overview_shows_the_workers_status_when_its_metrics_are_configured(
    site: Site, metrics_url: str
) -> None:
    settings = Settings(
        database_url=as_login(site.url, "api"),
        api=ApiSettings(
            secret=secrets.token_urlsafe(32), pool_size=1, worker_metrics_url=metrics_url
        ),
    )
    app = create_app(settings)
    try:
        client = app.test_client()
        csrf = csrf_of(client.get("/ui/login").get_data(as_text=True))
        client.post("/ui/login", data={"token": site.tokens["reader"], "csrf_token": csrf})
        html = client.get("/ui/overview").get_data(as_text=True)
    finally:
        app.extensions["auditor_db"].dispose()
    assert "Spool depth (rows waiting)" in html
    assert "12.0" in html


def test_stored_markup_is_shown_as_text_in_pages_and_in_the_live_tail(site: Site) -> None:
    hostile = '<script>alert("x")</script>'
    with psycopg.connect(libpq_conninfo(site.url)) as conn:
        store_batch(
            conn,
            [
                receipt(
                    om_message(
                        "XSS-1",
                        "Handling",
                        media_type="chat",
                        user_data={hostile: hostile + "\r\u2028"},
                    ),
                    at=5_000,
                    account=A2,
                )
            ],
        )
        conn.commit()
    client = site.signed_in()
    for path in ("/ui/interactions/XSS-1", "/ui/search?what=interactions&mediaType=chat"):
        html = client.get(path).get_data(as_text=True)
        assert "<script>alert" not in html
    html = client.get("/ui/interactions/XSS-1").get_data(as_text=True)
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    live = client.get("/ui/interactions/XSS-1/live?after=0").get_data(as_text=True)
    assert "<script>alert" not in live
    event = live.split("\n\n")[1]
    assert all(line.startswith(("id: ", "event: ", "data: ")) for line in event.split("\n"))
    assert "\r" not in live
    # what EventSource joins back is the rendered entry, U+2028 inside the raw JSON included
    data = "\n".join(line[6:] for line in event.split("\n") if line.startswith("data: "))
    assert "\u2028" in data
