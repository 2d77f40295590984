"""The web view over HTTP: SSE protocol, operations endpoints, admin, privacy."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from typing import Any
from xml.etree import ElementTree as ET

import aiohttp
from webhelp import ADMIN_TOKEN, Live, eventually

from bridge.contract.model import Author, ChannelKey, NativeId, Op, Posted
from bridge.contract.textconv import from_html


class SSE:
    """A minimal server-sent-events reader over aiohttp."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def next(self, timeout: float = 10.0) -> tuple[str, str, dict[str, Any]]:
        """(id, event type, data) of the next event; comments are skipped."""
        ev_id, ev_type, data = "", "message", ""
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.resp.content.readline()).decode().rstrip("\n")
                if line == "":
                    if data:
                        return ev_id, ev_type, json.loads(data)
                    ev_id, ev_type, data = "", "message", ""
                    continue
                field, _, value = line.partition(": ")
                if field == "id":
                    ev_id = value
                elif field == "event":
                    ev_type = value
                elif field == "data":
                    data += value


async def _page(s: aiohttp.ClientSession, url: str) -> str:
    async with s.get(url) as r:
        assert r.status == 200
        return await r.text()


def _last_id(page: str) -> str:
    m = re.search(r'data-last-id="([^"]+)"', page)
    assert m
    return m.group(1)


async def test_sse_resumes_exactly_after_last_event_id(live: Live) -> None:
    lobby = live.nets["lobby"]
    async with aiohttp.ClientSession() as s:
        since = _last_id(await _page(s, f"{live.url}/c/kmers"))
        async with s.get(f"{live.url}/c/kmers/stream", params={"since": since}) as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            sse = SSE(r)
            a = await lobby.post_as_member("alice", "first over the wire")
            first_id, kind, data = await sse.next()
            assert kind == "message" and data["kind"] == "posted"
            assert "first over the wire" in data["html"] and data["network"] == "Lobby"
        # Away: three changes happen.
        await lobby.edit_as_member(a, "first over the wire, edited")
        b = await lobby.post_as_member("bob", "second while away")
        await live.settle()  # its 'posted' entry is in the log ...
        await lobby.delete_as_member(b)  # ... and is scrubbed by the delete
        await live.settle()
        # The browser's own reconnect sends Last-Event-ID: exactly the missed ones.
        async with s.get(f"{live.url}/c/kmers/stream",
                         headers={"Last-Event-ID": first_id}) as r:
            sse = SSE(r)
            got = [await sse.next() for _ in range(3)]
        kinds = [d["kind"] for _, _, d in got]
        # The deleted post's content is not replayed, even from before its deletion:
        # its 'posted' entry now only says it is gone.
        assert kinds == ["edited", "deleted", "deleted"]
        assert "edited" in got[0][2]["html"]
        assert got[1][2]["id"] == got[2][2]["id"] != got[0][2]["id"]
        assert "second while away" not in json.dumps(got)
        ids = [int(i.split(":")[1]) for i, _, _ in got]
        assert ids == sorted(ids) and ids[0] == int(first_id.split(":")[1]) + 1
        # An id from another server life gets a reset, not a silent gap.
        async with s.get(f"{live.url}/c/kmers/stream",
                         headers={"Last-Event-ID": "deadbeef:3"}) as r:
            ev_id, kind, _ = await SSE(r).next()
            assert kind == "reset" and ev_id.endswith(f":{ids[-1]}")


async def test_deleted_and_hidden_posts_vanish_everywhere(live: Live) -> None:
    lobby, garden = live.nets["lobby"], live.nets["garden"]
    keep = await lobby.post_as_member("alice", "a post that stays")
    gone = await lobby.post_as_member("alice", "a post its author deletes")
    await garden.post_as_member("mallory", "spam that the admin hides")
    await live.settle()
    await lobby.delete_as_member(gone)
    await live.settle()
    spam = await live.post_id_of("spam that the admin hides")
    # unsafe: accept cookies from an IP-address host, as browsers do.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        # Log in through the form; the cookie is scoped to /admin.
        async with s.post(f"{live.url}/admin/login", data={"token": ADMIN_TOKEN},
                          allow_redirects=False) as r:
            assert r.status == 303
            assert "SameSite=Strict" in r.headers["Set-Cookie"]
            assert "HttpOnly" in r.headers["Set-Cookie"]
        admin = await _page(s, f"{live.url}/admin")
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', admin)
        assert csrf
        assert f'name="post" value="{spam}"' in admin  # a hide button on the recent post
        async with s.post(f"{live.url}/admin/hide", data={"csrf": csrf.group(1), "post": spam},
                          allow_redirects=False) as r:
            assert r.status == 303
        await live.settle()
        # The copies on the other networks were removed; the member's own stays theirs.
        for name in ("lobby", "porch"):
            msgs = await live.nets[name].messages()
            assert not any("spam that" in m.text and not m.deleted for m in msgs), name
        for path in ("/c/kmers", "/c/kmers/feed.atom", "/c/kmers/export.jsonl",
                     "/c/kmers/export.md", "/c/kmers/export.mbox", "/c/kmers/posts"):
            body = await _page(s, live.url + path)
            assert "a post that stays" in body, path
            assert "deletes" not in body and "spam that" not in body, path
        assert keep


async def test_admin_requires_token_and_csrf(live: Live) -> None:
    async with aiohttp.ClientSession() as s:
        page = await _page(s, f"{live.url}/admin")
        assert 'name="token"' in page and "Dead deliveries" not in page
        async with s.post(f"{live.url}/admin/login", data={"token": "wrong"},
                          allow_redirects=False) as r:
            assert r.status == 303 and "error" in r.headers["Location"]
            assert "Set-Cookie" not in r.headers
        # Without a session, and with a forged cookie: refused.
        async with s.post(f"{live.url}/admin/retry", data={"csrf": "x"}) as r:
            assert r.status == 403
        s.cookie_jar.update_cookies({"hb_admin": "0" * 64})
        async with s.post(f"{live.url}/admin/retry", data={"csrf": "x"}) as r:
            assert r.status == 403
    bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession(headers=bearer) as s:
        admin = await _page(s, f"{live.url}/admin")
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', admin).group(1)  # type: ignore[union-attr]
        # Authenticated but no CSRF field, or from another origin: refused.
        async with s.post(f"{live.url}/admin/retry", data={}) as r:
            assert r.status == 403
        async with s.post(f"{live.url}/admin/retry", data={"csrf": csrf},
                          headers={"Origin": "https://evil.example"}) as r:
            assert r.status == 403
        assert ADMIN_TOKEN not in admin


async def test_admin_retry_requeues_a_dead_delivery(live: Live) -> None:
    lobby, garden = live.nets["lobby"], live.nets["garden"]
    await lobby.post_as_member("alice", "parked then retried")
    await live.settle()
    post_id = await live.post_id_of("parked then retried")

    def park(tx: Any) -> str:
        did = tx.enqueue(post_id, "kmers/sb_garden", Op.EDIT)
        tx.finish(did, "dead", "HTTP 422: <b>refused</b> by the server")
        return str(did)

    did = await live.bridge.store.run(park)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as s:
        admin = await _page(s, f"{live.url}/admin")
        assert f'id="d-{did}"' in admin and "&lt;b&gt;refused&lt;/b&gt;" in admin
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', admin).group(1)  # type: ignore[union-attr]
        async with s.post(f"{live.url}/admin/retry", data={"csrf": csrf, "delivery": did},
                          allow_redirects=False) as r:
            assert r.status == 303 and "re-queued%201" in r.headers["Location"]
        await live.settle()
        row = await live.bridge.store.run(lambda tx: tx.delivery(did))
        assert row.state in ("sent", "skipped")
        assert f'id="d-{did}"' not in await _page(s, f"{live.url}/admin")
    assert any("parked then retried" in m.text for m in await garden.messages())


async def test_admin_blocks_an_author(live: Live) -> None:
    lobby, garden = live.nets["lobby"], live.nets["garden"]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as s:
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"',  # type: ignore[union-attr]
                         await _page(s, f"{live.url}/admin")).group(1)
        async with s.post(f"{live.url}/admin/block", allow_redirects=False, data={
                "csrf": csrf, "platform": "sandbox", "handle": "Troll", "reason": "spam"}) as r:
            assert r.status == 303
        assert "troll" in await _page(s, f"{live.url}/admin")
    await lobby.post_as_member("troll", "buy my stuff")
    await lobby.post_as_member("alice", "a normal post")
    await live.settle()
    texts = [m.text for m in await garden.messages()]
    assert any("a normal post" in t for t in texts)
    assert not any("buy my stuff" in t for t in texts)


async def test_admin_disabled_without_token(tmp_path: Any) -> None:
    from webhelp import live_bridge

    async with live_bridge(tmp_path, admin_token="") as lv, aiohttp.ClientSession() as s:
        async with s.get(f"{lv.url}/admin") as r:
            assert r.status == 404
        async with s.post(f"{lv.url}/admin/login", data={"token": ""}) as r:
            assert r.status == 404


async def test_healthz_metrics_and_headers(live: Live) -> None:
    await live.nets["lobby"].post_as_member("alice", "count me")
    await live.settle()
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{live.url}/healthz") as r:
            assert r.status == 200
            health = await r.json()
        assert health["status"] == "ok" and health["pending"] == 0
        assert set(health["adapters"]) == {"sb_lobby", "sb_garden", "sb_porch"}
        assert all(a["health"] == "connected" for a in health["adapters"].values())
        live.nets["porch"].set_down(True)
        live.bridge.accounts["sb_porch"].set_health(
            live.bridge.accounts["sb_porch"].health.__class__("disconnected"), "down for a test")
        async with s.get(f"{live.url}/healthz?strict=1") as r:
            assert r.status == 503
            assert (await r.json())["adapters"]["sb_porch"]["detail"] == "down for a test"
        # A library's error text carries a secret in an encoded form (SASL PLAIN's
        # base64, an IMAP quoted string): /healthz shows none of them.
        sasl = base64.b64encode(f"\0bot\0{ADMIN_TOKEN}".encode()).decode()
        live.bridge.accounts["sb_porch"].set_health(
            live.bridge.accounts["sb_porch"].health.__class__("disconnected"),
            f'login refused: AUTH PLAIN {sasl}; LOGIN bot "{ADMIN_TOKEN}"')
        async with s.get(f"{live.url}/healthz") as r:
            detail = (await r.json())["adapters"]["sb_porch"]["detail"]
        assert ADMIN_TOKEN not in detail and sasl not in detail
        assert detail.startswith("login refused: AUTH PLAIN ")
        async with s.get(f"{live.url}/metrics") as r:
            text = await r.text()
        assert 'hashbridge_posts_in_total{channel="kmers/sb_lobby"} 1' in text
        assert 'hashbridge_posts_out_total{channel="kmers/sb_garden",op="create"} 1' in text
        assert "hashbridge_delivery_latency_seconds_bucket" in text
        assert "# TYPE hashbridge_queue_depth gauge" in text
        async with s.get(f"{live.url}/c/kmers") as r:
            csp = r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
            assert "default-src 'none'" in csp and r.headers["X-Content-Type-Options"] == "nosniff"
        async with s.get(f"{live.url}/c/nope") as r:
            assert r.status == 404 and "Content-Security-Policy" in r.headers


async def test_no_email_address_on_public_pages(live: Live) -> None:
    ev = Posted(channel=ChannelKey("kmers/sb_porch"), native_id=NativeId("m1"),
                author=Author(platform="email", handle="grace.hopper@navy.example",
                              profile_url="mailto:grace.hopper@navy.example"),
                text=from_html('<p>write to <a href="mailto:ada@lovelace.example">'
                               "ada@lovelace.example</a> or bob@example.org</p>"))
    await live.bridge.ingest("sb_porch", [ev], None)
    await live.settle()
    async with aiohttp.ClientSession() as s:
        for path in ("/c/kmers", "/c/kmers/feed.atom", "/c/kmers/export.jsonl",
                     "/c/kmers/export.mbox", "/c/kmers/export.md", "/c/kmers/posts"):
            body = await _page(s, live.url + path)
            assert "grace.hopper" in body, path  # the name is shown ...
            for address in ("grace.hopper@navy.example", "ada@lovelace.example",
                            "bob@example.org", "mailto:"):
                assert address not in body, (path, address)  # ... the address never


async def test_atom_feed_is_valid_atom(live: Live) -> None:
    await live.nets["garden"].post_as_member("bob", "feed me <b>now</b> & then")
    await live.settle()
    async with aiohttp.ClientSession() as s, s.get(f"{live.url}/c/kmers/feed.atom") as r:
        assert r.content_type == "application/atom+xml"
        root = ET.fromstring(await r.read())
    ns = {"a": "http://www.w3.org/2005/Atom"}
    entries = root.findall("a:entry", ns)
    assert len(entries) == 1
    content = entries[0].find("a:content", ns)
    assert content is not None and content.get("type") == "html"
    assert "feed me &lt;b&gt;now&lt;/b&gt; &amp; then" in (content.text or "")
    assert entries[0].find("a:title", ns).text == "Bob on Garden"  # type: ignore[union-attr]


async def test_live_page_pages_back_without_javascript(live: Live) -> None:
    for i in range(105):
        await live.nets["lobby"].post_as_member("alice", f"numbered post {i:03d}")
    await eventually(lambda: _count(live, 105), what="105 posts stored")
    async with aiohttp.ClientSession() as s:
        page = await _page(s, f"{live.url}/c/kmers")
        assert "numbered post 104" in page and "numbered post 004" not in page
        older = re.search(r'href="(/c/kmers\?before=[0-9A-Z]+)"', page)
        assert older
        back = await _page(s, live.url + older.group(1))
        assert "numbered post 004" in back and "numbered post 005" not in back
        assert 'data-live="0"' in back


async def _count(live: Live, n: int) -> bool:
    return len(await live.post_ids()) >= n


async def test_live_view_recovers_when_the_bridge_drops_its_queue(
        tmp_path: Any, monkeypatch: Any) -> None:
    from webhelp import live_bridge

    from bridge.web import live as live_mod

    monkeypatch.setattr(live_mod, "DROP_CHECK", 0.2)
    async with live_bridge(tmp_path) as lv, aiohttp.ClientSession() as s:
        since = _last_id(await _page(s, f"{lv.url}/c/kmers"))
        async with s.get(f"{lv.url}/c/kmers/stream", params={"since": since}) as r:
            sse = SSE(r)
            # What Bridge.publish does to a subscriber whose queue is full.
            lv.bridge._subscribers.clear()
            _, kind, _ = await sse.next()
            assert kind == "reset"
            await lv.nets["lobby"].post_as_member("alice", "after the recovery")
            _, kind, data = await sse.next()
            assert data["kind"] == "posted" and "after the recovery" in data["html"]


async def test_changelog_resume_window() -> None:
    from bridge.web.live import ChangeLog

    log = ChangeLog(keep=3)
    assert log.parse(log.last_id) == 0
    for i in range(5):
        await log.append("kmers", "posted", f"p{i}", "Lobby", {"html": str(i)})
    assert log.parse(f"{log.boot}:5") == 5
    assert log.parse(f"{log.boot}:2") == 2  # entries 3..5 are all still kept
    assert log.parse(f"{log.boot}:1") is None  # entry 2 fell out: cannot resume
    assert log.parse(f"{log.boot}:9") is None and log.parse("other:3") is None
    assert log.parse(None) is None and log.parse(f"{log.boot}:x") is None
    assert [e.seq for e in log.after(3)] == [4, 5]
    await log.append("kmers", "deleted", "p4", "", {})
    assert log.after(4)[0].payload is None  # p4's content is gone from the log
    old = log.boot
    await log.restart()
    assert log.boot != old and log.parse(f"{old}:6") is None
