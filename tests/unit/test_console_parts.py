"""The console's pure parts: language choice, list filtering, sessions, ages."""

from __future__ import annotations

from datetime import UTC, datetime

from console.describe import describe
from console.i18n import choose, translator
from console.routes.requests import filtered
from console.sessions import SessionStore
from console.web import age


def test_language_from_the_switch_else_the_browser() -> None:
    assert choose(None, "ko-KR,ko;q=0.9,en;q=0.8") == "ko"
    assert choose(None, "en-US,ko;q=0.5") == "en"
    assert choose(None, "fr-FR,ko;q=0.3") == "ko"
    assert choose(None, "fr-FR") == "en"
    assert choose("en", "ko-KR") == "en"  # the switch wins
    assert choose("xx", "ko") == "ko"
    assert translator("ko")("st.completed") == "완료"
    assert translator("en")("too_late", id="model-1") == (
        "Too late: request model-1 has already completed."
    )


ROWS = [
    {"id": "model-1", "kind": "model", "name": "Churn", "state": "completed", "createdAt": "1"},
    {"id": "model-2", "kind": "model", "name": "x", "state": "requestCanceled", "createdAt": "2"},
    {
        "id": "target-1",
        "kind": "target",
        "name": "churn-risk",
        "state": "canceled",
        "createdAt": "3",
    },
]


def test_filters_by_kind_state_and_name_newest_first() -> None:
    assert [r["id"] for r in filtered(ROWS, "", "", "")] == ["target-1", "model-2", "model-1"]
    assert [r["id"] for r in filtered(ROWS, "", "cancelled", "")] == ["target-1", "model-2"]
    assert [r["id"] for r in filtered(ROWS, "model", "cancelled", "")] == ["model-2"]
    assert [r["id"] for r in filtered(ROWS, "", "", " CHURN ")] == ["target-1", "model-1"]


def test_a_session_ends_when_idle_when_its_token_expires_and_on_sign_out() -> None:
    now = [1000.0]
    store = SessionStore(idle_s=60, clock=lambda: now[0])

    def new(expires: float) -> str:
        fields = {"username": "u", "roles": ("user",), "token": "t", "menus": ()}
        return store.create(token_expires_at=expires, **fields).id

    idle, short, ended = new(10_000), new(1030), new(10_000)
    assert store.get(idle)[0] is not None
    store.end(ended)
    assert store.get(ended) == (None, True)
    now[0] = 1031
    assert store.get(short) == (None, True)  # its token expired
    assert store.get(idle)[0] is not None  # seen 31 s ago: still live
    now[0] = 1092
    assert store.get(idle) == (None, True)  # idle for 61 s
    assert store.get(None) == (None, False)  # no cookie: not "expired"
    session = store.create(token_expires_at=10_000, username="u", roles=(), token="t", menus=())
    assert session.csrf_ok(session.csrf) and not session.csrf_ok(None)
    assert not session.csrf_ok(session.csrf + "x")


def test_age_is_short_and_in_the_page_language() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert age("2026-01-01T11:59:15Z", "en", now) == "45 s"
    assert age("2026-01-01T11:57:00+00:00", "en", now) == "3 min"
    assert age("2026-01-01T09:00:00Z", "ko", now) == "3시간"
    assert age("2025-12-30T12:00:00Z", "en", now) == "2 d"


def test_timeline_details_in_words() -> None:
    t = translator("en")
    batch = {
        "kind": "batch",
        "detail": {"jobId": 1, "batch": 2, "offset": 200, "rows": 200, "totalRows": 1000},
    }
    assert describe(batch, t) == "batch 2: rows 200 to 400 of 1000 · job 1"
    step = {"kind": "progress", "detail": {"jobId": 1, "step": 2, "totalSteps": 6, "progress": 33}}
    assert describe(step, t) == "step 2 of 6 (33%) · job 1"
    cancelled = {
        "kind": "state",
        "reason": "wrong window",
        "detail": {"previousState": "inProgress"},
    }
    assert describe(cancelled, t) == "reason: wrong window · from inProgress"
    assert describe({"kind": "future", "detail": {"x": 1}}, t) == "x=1"
