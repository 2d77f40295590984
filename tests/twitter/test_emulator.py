"""The X emulator against the official spec, the recorded cassettes and X's rules,
with tweepy 4.17's AsyncClient as the client."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import tweepy
import yaml
from openapi_core.testing import MockRequest, MockResponse
from twitter_support import SHARED, Running

EXPANSIONS = ["author_id", "referenced_tweets.id", "attachments.media_keys"]
TWEET_FIELDS = ["author_id", "created_at", "conversation_id", "entities", "referenced_tweets",
                "attachments", "note_tweet", "in_reply_to_user_id", "lang", "public_metrics",
                "edit_controls"]
USER_FIELDS = ["username", "name", "created_at", "profile_image_url", "public_metrics"]


def validate(api: Any, ex: dict[str, Any]) -> None:
    req = MockRequest("https://api.twitter.com", ex["method"].lower(), ex["path"],
                      args=ex["query"])
    resp = MockResponse(ex["response"], status_code=ex["status"],
                        content_type=ex["content_type"])
    api.validate_response(req, resp)


async def busy_conversation(x: Running) -> None:
    st = x.emu.state
    alice, bob = st.user("alice"), st.user("bob")
    root = st.create(alice, "Welcome to #kmers tonight @kmbridge https://example.org/agenda")
    st.create(bob, "#kmers question: what about 漢字 and 👩‍👩‍👧 emoji?", reply_to=root.id)
    st.create(alice, "#kmers " + "long thread text " * 30)
    st.create(bob, "RT #kmers", retweet_of=root.id)
    c = x.client()
    await c.get_me()
    made = await c.create_tweet(text="bridge copy #kmers")
    await c.search_recent_tweets("#kmers -is:retweet", expansions=EXPANSIONS,
                                 tweet_fields=TWEET_FIELDS, user_fields=USER_FIELDS,
                                 media_fields=["url", "alt_text"], user_auth=True)
    await c.get_tweet(root.id, tweet_fields=TWEET_FIELDS, user_auth=True)
    await c.get_tweets([root.id, "1"], user_auth=True)
    await c.get_users_tweets(x.emu.state.user("kmbridge").id, max_results=5, user_auth=True)
    await c.delete_tweet(made.data["id"])


async def test_responses_validate_against_the_x_openapi_spec(xemu: Running,
                                                              x_openapi: Any) -> None:
    await busy_conversation(xemu)
    checked = 0
    for ex in xemu.emu.exchanges:
        assert ex["status"] < 300, ex
        validate(x_openapi, ex)
        checked += 1
    assert checked == 7


async def test_error_problems_validate_where_the_spec_has_their_type(
        xemu: Running, x_openapi: Any) -> None:
    c = xemu.client()
    with pytest.raises(tweepy.BadRequest):
        await c.search_recent_tweets("#kmers", max_results=5, user_auth=True)
    bad = xemu.emu.exchanges[-1]
    assert bad["status"] == 400 and bad["content_type"] == "application/problem+json"
    validate(x_openapi, bad)  # InvalidRequestProblem
    page = await c.get_tweets(["1", "2"], user_auth=True)
    assert [e["resource_id"] for e in page.errors] == ["1", "2"]
    validate(x_openapi, xemu.emu.exchanges[-1])  # 200 with ResourceNotFoundProblem errors


async def test_the_validator_would_catch_a_broken_payload(xemu: Running,
                                                           x_openapi: Any) -> None:
    from openapi_core.validation.response.exceptions import InvalidData

    await busy_conversation(xemu)
    search = next(e for e in xemu.emu.exchanges if e["path"].endswith("/search/recent"))
    body = json.loads(search["response"])
    body["data"][0]["entities"]["hashtags"][0].pop("tag")
    with pytest.raises(InvalidData):
        validate(x_openapi, {**search, "response": json.dumps(body).encode()})


def cassette(name: str) -> list[dict[str, Any]]:
    path = SHARED / "recorded" / "tweepy" / name
    if not path.exists():
        pytest.skip(f"recorded cassette {path} absent")
    return yaml.safe_load(path.read_text())["interactions"]


def shape(obj: Any) -> Any:
    """Keys and value types, recursively (values differ, structure must not)."""
    if isinstance(obj, dict):
        return {k: shape(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [shape(obj[0])] if obj else []
    return type(obj).__name__


def recorded_body(inter: dict[str, Any]) -> Any:
    import gzip

    raw = inter["response"]["body"]["string"]
    if isinstance(raw, bytes):
        raw = gzip.decompress(raw)
    return json.loads(raw)


def sent_body(inter: dict[str, Any]) -> Any:
    body = inter["request"]["body"]
    return body if isinstance(body, dict) else json.loads(body)


async def test_create_and_delete_match_the_recorded_cassette(xemu: Running) -> None:
    create, delete = cassette("test_asyncclient_create_and_delete_tweet.yaml")
    c = xemu.client()
    made = await c.create_tweet(text=sent_body(create)["text"])
    gone = await c.delete_tweet(made.data["id"])
    ours = [e for e in xemu.emu.exchanges]
    assert ours[0]["status"] == create["response"]["status"]["code"] == 201
    assert ours[1]["status"] == delete["response"]["status"]["code"] == 200
    rec_create = recorded_body(create)
    # 2022 recording predates edit history; today X adds edit_history_tweet_ids.
    assert set(rec_create["data"]) <= set(json.loads(ours[0]["response"])["data"])
    assert shape(json.loads(ours[1]["response"])) == shape(recorded_body(delete))
    assert gone.data == {"deleted": True}
    for ex, rec in ((ours[0], create), (ours[1], delete)):
        rec_headers = {k.lower() for k in rec["response"]["headers"]}
        for h in ("x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset"):
            assert h in rec_headers and h in ex["headers"]
    assert ours[0]["headers"]["location"].endswith("/2/tweets/" + made.data["id"])
    assert "location" in {k.lower() for k in create["response"]["headers"]}


@pytest.mark.parametrize("name", ["test_asyncclient_search_recent_tweets.yaml",
                                  "test_client_get_me.yaml", "test_client_get_tweet.yaml",
                                  "test_client_get_users_tweets.yaml"])
async def test_read_routes_have_the_recorded_shape(xemu: Running, name: str) -> None:
    rec = cassette(name)[0]
    st = xemu.emu.state
    for i in range(12):
        st.create(st.user("kmbridge"), f"Tweepy #kmers post {i}")
    uri = rec["request"]["uri"].split("api.twitter.com", 1)[1]
    path = uri.split("?")[0]
    if "/tweets/" in path and path.split("/")[-1].isdigit():
        uri = uri.replace(path.split("/")[-1], next(iter(st.tweets)))
    if "/users/" in path and path.split("/")[3].isdigit():
        uri = uri.replace(path.split("/")[3], st.user("kmbridge").id)
    resp = await xemu.client().request("GET", uri.split("?")[0],
                                       params=dict(p.split("=", 1) for p in uri.split("?")[1]
                                                   .split("&")) if "?" in uri else {},
                                       user_auth=True)
    ex = xemu.emu.exchanges[-1]
    assert ex["status"] == rec["response"]["status"]["code"] == 200
    ours, theirs = json.loads(ex["response"]), recorded_body(rec)
    assert set(ours) == set(theirs)
    if "data" in theirs:
        mine = ours["data"][0] if isinstance(ours["data"], list) else ours["data"]
        real = theirs["data"][0] if isinstance(theirs["data"], list) else theirs["data"]
        assert set(real) <= set(mine), (real, mine)
    if "meta" in theirs:
        assert set(theirs["meta"]) - {"next_token"} <= set(ours["meta"])
    assert resp is not None


async def test_bad_credentials_are_401(xemu: Running) -> None:
    bad = dict(xemu.bot, access_token_secret="wrong")
    with pytest.raises(tweepy.Unauthorized):
        await xemu.client(bad).get_me()
    with pytest.raises(tweepy.Unauthorized):
        await xemu.client(dict(xemu.bot, bearer_token="nope"), bearer=True) \
            .search_recent_tweets("#kmers")
    ex = xemu.emu.exchanges[-1]
    assert ex["status"] == 401 and "x-rate-limit-reset" not in ex["headers"]


async def test_bearer_app_auth_reads_but_cannot_post(xemu: Running) -> None:
    app = xemu.client(bearer=True)
    page = await app.search_recent_tweets("#kmers")
    assert page.meta == {"result_count": 0}
    assert xemu.emu.exchanges[-1]["headers"]["x-rate-limit-limit"] == "450"
    with pytest.raises(tweepy.Forbidden, match="Application-Only"):
        await app.create_tweet(text="no", user_auth=False)


async def test_duplicate_content_is_403(xemu: Running) -> None:
    c = xemu.client()
    await c.create_tweet(text="same words #kmers")
    with pytest.raises(tweepy.Forbidden, match="duplicate content"):
        await c.create_tweet(text="same words #kmers")


async def test_reply_needs_a_summons(xemu: Running) -> None:
    st = xemu.emu.state
    plain = st.create(st.user("carol"), "just chatting #kmers")
    asked = st.create(st.user("dave"), "@kmbridge what is on tonight? #kmers")
    c = xemu.client()
    with pytest.raises(tweepy.Forbidden, match="not been mentioned"):
        await c.create_tweet(text="answer", in_reply_to_tweet_id=plain.id)
    ok = await c.create_tweet(text="answer", in_reply_to_tweet_id=asked.id)
    own = await c.create_tweet(text="thread on my own post", in_reply_to_tweet_id=ok.data["id"])
    assert st.tweets[own.data["id"]].reply_to == ok.data["id"]


async def test_rate_limit_window_then_429_with_reset(xemu: Running) -> None:
    now = [1_800_000_000.0]
    xemu.emu.state.clock = lambda: now[0]
    c = xemu.client()
    for i in range(50):
        await c.create_tweet(text=f"post {i}")
        made = await c.create_tweet(text=f"other {i}")
        await c.delete_tweet(made.data["id"])
    with pytest.raises(tweepy.TooManyRequests) as err:
        await c.delete_tweet("1")
    assert err.value.reset_time == int(now[0]) + 900
    assert json.loads(xemu.emu.exchanges[-1]["response"])["title"] == "Too Many Requests"
    with pytest.raises(tweepy.TooManyRequests):
        await c.create_tweet(text="101st")
    now[0] += 901
    await c.create_tweet(text="new window")
    assert xemu.emu.exchanges[-1]["headers"]["x-rate-limit-remaining"] == "99"


async def test_usage_cap_is_a_distinct_429(xemu: Running) -> None:
    st = xemu.emu.state
    st.read_cap = 3
    for i in range(5):
        st.create(st.user("alice"), f"#kmers {i}")
    c = xemu.client()
    await c.search_recent_tweets("#kmers", user_auth=True)
    with pytest.raises(tweepy.TooManyRequests) as err:
        await c.search_recent_tweets("#kmers", user_auth=True)
    assert err.value.response.headers["x-rate-limit-remaining"] != "0"
    assert json.loads(xemu.emu.exchanges[-1]["response"])["type"].endswith("/usage-capped")


async def test_faults_500_storm_and_slow(xemu: Running) -> None:
    c = xemu.client()
    xemu.emu.fail(503, count=2)
    for _ in range(2):
        with pytest.raises(tweepy.TwitterServerError):
            await c.get_me()
    await c.get_me()
    xemu.emu.rate_limit_storm(0.3, route="/2/tweets/search")
    with pytest.raises(tweepy.TooManyRequests) as err:
        await c.search_recent_tweets("#kmers", user_auth=True)
    assert err.value.reset_time >= int(time.time())
    xemu.emu.slow(0.3)
    t0 = time.monotonic()
    await c.get_me()
    assert time.monotonic() - t0 >= 0.3


async def test_search_operators_paging_and_since_id(xemu: Running) -> None:
    st = xemu.emu.state
    alice, bot = st.user("alice"), st.user("kmbridge")
    ids = [st.create(alice, f"#KMers message {i}").id for i in range(25)]
    st.create(bot, "#kmers from the bot")
    st.create(alice, "#kmers rt", retweet_of=ids[0])
    st.create(alice, "#other tag")
    c = xemu.client()
    q = "#kmers -is:retweet -from:kmbridge"
    p1 = await c.search_recent_tweets(q, max_results=10, user_auth=True)
    assert [str(t.id) for t in p1.data] == ids[::-1][:10]
    p2 = await c.search_recent_tweets(q, max_results=10, next_token=p1.meta["next_token"],
                                      user_auth=True)
    assert [str(t.id) for t in p2.data] == ids[::-1][10:20]
    newer = await c.search_recent_tweets(q, since_id=ids[20], user_auth=True)
    assert [str(t.id) for t in newer.data] == ids[:20:-1]
    mine = await c.search_recent_tweets("from:kmbridge", user_auth=True)
    assert len(mine.data) == 1
    with pytest.raises(tweepy.BadRequest, match="max_results"):
        await c.search_recent_tweets(q, max_results=5, user_auth=True)


async def test_long_post_has_note_tweet_and_urls_are_tco(xemu: Running) -> None:
    st = xemu.emu.state
    long = "#kmers " + "a long thought, " * 40 + "see https://example.org/x"
    t = st.create(st.user("alice"), long)
    page = await xemu.client().get_tweet(t.id, tweet_fields=["note_tweet", "entities"],
                                         user_auth=True)
    assert page.data.text.endswith("…") and len(page.data.text) < len(long)
    note = page.data.data["note_tweet"]
    assert note["text"].startswith("#kmers a long thought")
    assert note["entities"]["urls"][0]["expanded_url"] == "https://example.org/x"
    assert "example.org" not in note["text"]


async def test_media_upload_v1_and_attach(xemu: Running, tmp_path: Any) -> None:
    import aiohttp

    form = aiohttp.FormData()
    form.add_field("media", b"\x89PNG\r\n\x1a\n" + b"0" * 100, filename="a.png",
                   content_type="image/png")
    c = xemu.client()
    # tweepy's v1.1 API is synchronous (requests); the adapter sends the same
    # multipart body through its own session, signed the same way.
    from oauthlib.oauth1 import Client as OAuthClient

    url = "https://upload.twitter.com/1.1/media/upload.json"
    oc = OAuthClient(xemu.bot["consumer_key"], xemu.bot["consumer_secret"],
                     xemu.bot["access_token"], xemu.bot["access_token_secret"])
    _, headers, _ = oc.sign(url, "POST")
    async with xemu.session.post(url, data=form, headers=headers) as r:
        assert r.status == 200
        up = await r.json()
    assert set(up) >= {"media_id", "media_id_string", "size", "expires_after_secs", "image"}
    made = await c.create_tweet(text="with picture", media_ids=[up["media_id_string"]])
    page = await c.get_tweet(made.data["id"], expansions=["attachments.media_keys"],
                             media_fields=["url"], user_auth=True)
    assert page.includes["media"][0].media_key == up["media_key"]


async def test_usage_endpoint_follows_the_spec(xemu: Running, x_openapi: Any) -> None:
    """``GET /2/usage/tweets``: app-only (the spec's ``BearerToken`` security), the
    default fields of X's docs, the daily breakdowns on request (validated against
    ``GetUsageResponse``), the ``usage.fields`` enum and ``days`` range enforced."""
    st = xemu.emu.state
    st.read_cap, st.cap_reset_day = 10_000, 19
    for i in range(3):
        st.create(st.user("alice"), f"#kmers {i}")
    await xemu.client().search_recent_tweets("#kmers", user_auth=True)
    app = xemu.client(bearer=True)
    plain = await app.request("GET", "/2/usage/tweets")
    assert await plain.json() == {"data": {"cap_reset_day": 19, "project_cap": "10000",
                                           "project_id": st.project_id,
                                           "project_usage": "3"}}
    validate(x_openapi, xemu.emu.exchanges[-1])
    full = await app.request("GET", "/2/usage/tweets", params={
        "usage.fields": "daily_project_usage,daily_client_app_usage", "days": "2"})
    data = (await full.json())["data"]
    validate(x_openapi, xemu.emu.exchanges[-1])
    days = data["daily_project_usage"]["usage"]
    assert [d["usage"] for d in days] == ["3", "0"]
    assert data["daily_client_app_usage"][0]["usage_result_count"] == 2
    assert xemu.emu.exchanges[-1]["headers"]["x-rate-limit-limit"] == "50"
    with pytest.raises(tweepy.BadRequest):
        await app.request("GET", "/2/usage/tweets", params={"usage.fields": "cost"})
    validate(x_openapi, xemu.emu.exchanges[-1])
    with pytest.raises(tweepy.BadRequest):
        await app.request("GET", "/2/usage/tweets", params={"days": "91"})
    with pytest.raises(tweepy.Forbidden, match=r"OAuth 1\.0a User Context is forbidden"):
        await xemu.client().request("GET", "/2/usage/tweets", params={}, user_auth=True)


async def test_an_access_level_without_a_route_is_403_client_not_enrolled(
        xemu: Running) -> None:
    xemu.emu.state.not_enrolled = {"search"}
    with pytest.raises(tweepy.Forbidden) as err:
        await xemu.client(bearer=True).search_recent_tweets("#kmers")
    body = json.loads(xemu.emu.exchanges[-1]["response"])
    assert body["reason"] == "client-not-enrolled" and body["title"] == "Client Forbidden"
    assert body["type"] == "https://api.twitter.com/2/problems/client-forbidden"
    assert "attached to a Project" in str(err.value)
    await xemu.client().get_me()  # the routes its access level has still answer
