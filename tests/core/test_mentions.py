"""No relayed message mentions anyone, by each target's own mention rule
(issue 12, item 2): twitter-text's extractor for X, Mastodon's MENTION_RE,
no Matrix pill; whatever node of the tree the at-sign came from (text, code,
a link's label, a hashtag anchor, a display name) and in X digests."""

from __future__ import annotations

import dataclasses
import re
from functools import cache

import pytest
import twitter_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.mastodon.adapter import MastodonAdapter
from adapters.mastodon.config import MastodonAccount, MastodonChannel
from adapters.mastodon.convert import status_length
from adapters.matrix import compose as mx_compose
from adapters.matrix.adapter import MatrixAdapter
from adapters.matrix.config import MatrixAccount
from adapters.twitter.adapter import TwitterAdapter
from adapters.twitter.compose import DigestItem, digest_text
from adapters.twitter.config import TwitterAccount, TwitterChannel
from adapters.twitter.digest import digest_post_text
from adapters.twitter.textrules import weighted_length
from bridge.contract.adapter import Capabilities, ChannelSpec, TextFormat
from bridge.contract.mentions import (
    WORD_JOINER,
    mastodon_mentions,
    neutralise_generic,
    neutralise_mastodon,
    x_live_mentions,
    x_mentions,
)
from bridge.contract.model import Author, ChannelKey, NativeId, Post, PostId
from bridge.contract.richtext import (
    Code,
    CodeBlock,
    Emphasis,
    Hashtag,
    Inline,
    LineBreak,
    Link,
    Mention,
    Paragraph,
    Quote,
    RichText,
    Text,
)
from bridge.contract.textconv import from_html
from bridge.outbound.render import Target, render

KEY = ChannelKey("kmers/target")


# ---------------------------------------------------------------- the targets

@cache
def x_caps(premium: bool = False) -> Capabilities:
    acct = TwitterAccount(consumer_key="a", consumer_secret="b", access_token="c",
                          access_token_secret="d", premium=premium)
    spec = ChannelSpec(key=KEY, community="kmers", hashtag="kmers", direction="both",
                       options=TwitterChannel(query="#kmers"))
    return TwitterAdapter(acct, (spec,)).capabilities(KEY)


@cache
def masto_caps() -> Capabilities:
    spec = ChannelSpec(key=KEY, community="kmers", hashtag="kmers", direction="both",
                       options=MastodonChannel(hashtag="kmers"))
    acct = MastodonAccount(base_url="https://m.example", access_token="t")
    return MastodonAdapter(acct, (spec,), name="t").capabilities(KEY)


@cache
def matrix_caps() -> Capabilities:
    acct = MatrixAccount(homeserver="http://127.0.0.1:1", user_id="@bot:hs.example",
                         access_token="t")
    return MatrixAdapter(acct, ()).capabilities(KEY)


def x_live(text: str, *, at_runs: bool = False) -> list[tuple[int, int, str]]:
    """The mentions X makes of *text*: twitter-text's extractor, URLs first."""
    urls = [tuple(u["indices"]) for u in twitter_text.extract_urls_with_indices(text)]
    return x_live_mentions(text, urls, at_runs=at_runs)  # type: ignore[arg-type]


def post(rt: RichText, name: str = "Alice", handle: str = "alice@m.example") -> Post:
    return Post(id=PostId("01TEST0000000000000000000A"), community="kmers",
                origin_channel=ChannelKey("kmers/masto"), origin_native_id=NativeId("1"),
                permalink="https://m.example/@alice/1",
                author=Author(platform="mastodon", handle=handle, display_name=name), text=rt)


def para(*inlines: Inline) -> RichText:
    return RichText((Paragraph(tuple(inlines)),))


# ------------------------------------------- twitter-text's conformance cases

# From twitter-text's conformance/extract.yml (mentions, mentions_with_indices,
# mentions_or_lists_with_indices): (text, expected screen names with indices).
X_CONFORMANCE: list[tuple[str, list[tuple[str, int, int]] | list[str]]] = [
    ("@username reply", ["username"]),
    ("mention @username", ["username"]),
    ("mention @username in the middle", ["username"]),
    ("mention @user_name", ["user_name"]),
    ("mention @12345", ["12345"]),
    ("mention @username1 @username2", ["username1", "username2"]),
    ("の@usernameに到着を待っている", ["username"]),
    ("Current Status: @_@ (cc: @username)", ["username"]),
    ("@aliceìnheiro something something", []),
    ("@username email me @test@example.com", ["username"]),
    ("@http://twitter.com", []),
    ("@username\n@mention", ["username", "mention"]),
    ("RT@username RT:@mention RT @test", ["username", "mention", "test"]),
    ("rt@username rt:@mention rt @test", ["username", "mention", "test"]),
    ("Rt@username Rt:@mention Rt @test", ["username", "mention", "test"]),
    ("rT@username rT:@mention rT @test", ["username", "mention", "test"]),
    ("f!@kn", []), ("f@@kn", []), ("f#@kn", []), ("f$@kn", []), ("f%@kn", []),
    ("f&@kn", []), ("f*@kn", []),
    ("@username yo!", [("username", 0, 9)]),
    ("username @username", [("username", 9, 18)]),
    ("の@usernameに到着を待っている", [("username", 1, 10)]),
    ("@username/list-name is a great list!", [("username", 0, 19)]),
    ("Hey @username, check out out @otheruser/list_name-01!",
     [("username", 4, 13), ("otheruser", 29, 52)]),
    ("の@username/list_name-01に到着を待っている", [("username", 1, 23)]),
    ("@username/7list-name is a great list!", [("username", 0, 9)]),
]


@pytest.mark.parametrize(("text", "expected"), X_CONFORMANCE)
def test_x_mention_extractor_passes_twitter_texts_conformance_cases(
        text: str, expected: list[tuple[str, int, int]] | list[str]) -> None:
    got = x_mentions(text)
    if expected and isinstance(expected[0], tuple):
        assert [(n, s, e) for s, e, n in got] == expected
    else:
        assert [n for _, _, n in got] == expected


def test_fullwidth_at_sign_is_an_at_sign_on_x_and_is_neutralised() -> None:
    assert [n for _, _, n in x_mentions("hello ＠jack")] == ["jack"]
    out = x_caps().neutralise("hello ＠jack and @jill")
    assert out == f"hello ＠{WORD_JOINER}jack and @{WORD_JOINER}jill"
    assert x_live(out) == [] and x_live(out, at_runs=True) == []


def test_x_rule_keeps_urls_whole_and_java_at_runs_are_covered() -> None:
    rule = x_caps().neutralise
    url = "https://mastodon.social/@alice/1"
    assert rule(f"see {url} now") == f"see {url} now"   # X links it; no mention inside
    # (".example" is no TLD to twitter-text: that "URL" is text, its @alice a mention)
    assert x_live(rule("see https://m.example/@alice/1")) == []
    assert x_live(rule("x @@bob"), at_runs=True) == []   # Java's twitter-text takes @@bob
    assert rule("mail me@example.org") == "mail me@example.org"  # not a mention on X


@pytest.mark.parametrize(("text", "live"), [
    ("hi @bob", [3]), ("@bob@m.example", [0]), ("a@b", []), ("https://h.example/@bob", []),
    ("x=@bob", []), ("½@bob", [1]), ("e\u0301@bob", []), ("＠bob", []), ("(@bob)", [1]),
])
def test_mastodon_rule_is_mention_re(text: str, live: list[int]) -> None:
    assert mastodon_mentions(text) == live
    assert mastodon_mentions(neutralise_mastodon(text)) == []


# ------------------------------------------------ every way in, through render

X_BYPASSES = [
    ("inline code", para(Text("see "), Code("@jack"), Text(" please"))),
    ("code block", RichText((CodeBlock("ping @jack"),))),
    ("link label, links dropped", para(Link("https://m.example/x", "@jack"))),
    ("hashtag anchor", from_html('<p><a href="https://m.example/tags/kmers" rel="tag">'
                                 "#kmers @jack</a></p>")),
    ("fullwidth at-sign", para(Text("hello ＠jack"))),
    ("emphasis around the name", para(Text("hi @"), Emphasis((Text("jack"),)))),
    ("after RT", para(Text("RT"), Code("@jack"))),
]


@pytest.mark.parametrize(("why", "rt"), X_BYPASSES, ids=[w for w, _ in X_BYPASSES])
def test_no_node_brings_a_live_mention_to_x(why: str, rt: RichText) -> None:
    for split in ("thread", "truncate"):
        for r in render(post(rt), Target(caps=x_caps(), hashtag="kmers", split=split), "M"):
            assert x_live(r.plain) == [], (why, r.plain)
            assert "jack" in r.plain  # still readable


@pytest.mark.parametrize("name", ["@jack", "＠jack", "RT@jack", "x @jack"])
def test_display_names_never_mention_on_x_or_mastodon(name: str) -> None:
    p = post(para(Text("hello")), name=name)
    [r] = render(p, Target(caps=x_caps(), hashtag="kmers"), "Mastodon")
    assert x_live(r.plain) == [] and "jack" in r.plain
    [r] = render(p, Target(caps=masto_caps(), hashtag="kmers"), "X")
    assert mastodon_mentions(r.plain) == []


def test_a_thread_part_starting_at_a_name_is_judged_again() -> None:
    # "me@jack" is not a mention; cut before "@jack" it would be one.
    text = "word " * 50 + "me@jack " + "word " * 50
    caps = dataclasses.replace(x_caps(), max_length=60)
    parts = render(post(RichText.plain(text)), Target(caps=caps, hashtag="k"), "M")
    assert len(parts) > 3
    for r in parts:
        assert x_live(r.plain) == [] and weighted_length(r.plain) <= 60


def test_no_matrix_pill_in_the_formatted_body() -> None:
    rt = para(Text("thanks "), Link("https://matrix.to/#/@bob:hs.example", "Bob"),
              Text(" and "), Link("https://matrix.to/#/%40eve:hs.example", "Eve"))
    [r] = render(post(rt), Target(caps=matrix_caps(), hashtag="kmers"), "Mastodon")
    assert "matrix.to" not in r.html and "Bob" in r.html and "Eve" in r.html
    content = mx_compose.message_content(r)
    assert content["m.mentions"] == {} and "matrix.to" not in content["formatted_body"]


def test_x_digest_names_and_texts_never_mention() -> None:
    # Items as an older version queued them (raw display names) and a line
    # that fitting cuts right after a name that was not a mention.
    items = [DigestItem(author="@jack", text="hi ＠jill", network="mastodon"),
             DigestItem(author="RT", text="@bob " + "x" * 300, network="matrix"),
             DigestItem(author="Eve", text="w " * 120 + "@carol@m.example is here",
                        network="email")]
    for n in range(1, len(items) + 1):
        text, _ = digest_text(items[:n], hashtag="kmers")
        out = digest_post_text(text, 280)
        assert x_live(out) == [] and x_live(out, at_runs=True) == []
        assert weighted_length(out) <= 280


def test_length_fit_holds_after_neutralising() -> None:
    # Each word joiner weighs 2 on X: a text that fits before neutralising
    # may not after; the fit is measured on the final text.
    text = "@ab " * 69  # 276 weighted before, 414 after
    for split in ("thread", "truncate"):
        parts = render(post(RichText.plain(text)), Target(
            caps=x_caps(), hashtag="", attribution="", append_hashtag=False, split=split), "M")
        for r in parts:
            assert weighted_length(r.plain) <= 280 and x_live(r.plain) == []


# ------------------------------------------------ property: arbitrary trees

_AT = st.sampled_from(["@", "＠", "@@", "RT@", "rt:@", ".@", "/@", "=@", "x@", "½@", " @"])
_NAME = st.sampled_from(["bob", "alice_2", "a" * 25, "bob@m.example", "user/list-x",
                         "aliceìn", "http://x.com", "Bob", "_", "9"])
_word = st.text(alphabet="ab c.-_/:=#\n漢😀é\u0301", max_size=8)
_piece = st.one_of(_word, st.tuples(_AT, _NAME).map("".join),
                   st.sampled_from([" https://m.example/@bob/1 ", " m.example ", " #kmers ",
                                    "https://matrix.to/#/@bob:hs.example"]))
_txt = st.lists(_piece, max_size=6).map("".join)
_URLS = st.sampled_from(["https://m.example/x", "https://matrix.to/#/@bob:hs.example",
                         "https://m.example/@bob", "mailto:bob@m.example"])
_inline: st.SearchStrategy[Inline] = st.recursive(
    st.one_of(_txt.map(Text), _txt.map(Code), st.builds(Link, _URLS, _txt),
              st.builds(Mention, _NAME), _txt.map(Hashtag), st.just(LineBreak())),
    lambda ch: st.builds(Emphasis, st.lists(ch, min_size=1, max_size=3).map(tuple),
                         st.booleans()),
    max_leaves=10)
_block = st.one_of(st.lists(_inline, min_size=1, max_size=6).map(lambda x: Paragraph(tuple(x))),
                   _txt.map(CodeBlock))
_tree = st.recursive(_block, lambda b: st.lists(b, min_size=1, max_size=3).map(
    lambda x: Quote(tuple(x))), max_leaves=4)
TREES = st.lists(_tree, min_size=1, max_size=4).map(lambda b: RichText(tuple(b)))
NAMES = st.one_of(st.tuples(_AT, _NAME).map("".join), st.text(max_size=20))
FIT = dict(split=st.sampled_from(["thread", "truncate"]), links=st.booleans(),
           limit=st.sampled_from([None, 60, 140]))
_settings = settings(max_examples=150, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


def _target(caps: Capabilities, split: str, links: bool, limit: int | None) -> Target:
    return Target(caps=caps, hashtag="kmers", split=split, links=links, max_length=limit)


@_settings
@given(rt=TREES, name=NAMES, **FIT)
def test_property_x_text_has_no_mention_by_twitter_text(
        rt: RichText, name: str, split: str, links: bool, limit: int | None) -> None:
    caps = x_caps()
    parts = render(post(rt, name=name), _target(caps, split, links, limit), "Mastodon",
                   reference="https://m.example/@alice/1")
    for r in parts:
        assert x_live(r.plain) == [], r.plain
        assert x_live(r.plain, at_runs=True) == [], r.plain
        assert weighted_length(r.plain) <= (limit or 280), r.plain


@_settings
@given(rt=TREES, name=NAMES, **FIT)
def test_property_mastodon_text_has_no_mention_by_mention_re(
        rt: RichText, name: str, split: str, links: bool, limit: int | None) -> None:
    caps = masto_caps()
    parts = render(post(rt, name=name), _target(caps, split, links, limit), "X",
                   reference="https://m.example/@alice/1")
    for r in parts:
        assert mastodon_mentions(r.plain) == [], r.plain
        assert status_length(r.plain) <= (limit or 500), r.plain


_PILL = re.compile(r"href=\"https://matrix\.to/#/(@|%40)", re.IGNORECASE)


@_settings
@given(rt=TREES, name=NAMES, **FIT)
def test_property_matrix_message_has_no_pill_and_no_mentions(
        rt: RichText, name: str, split: str, links: bool, limit: int | None) -> None:
    caps = matrix_caps()
    parts = render(post(rt, name=name), _target(caps, split, links, limit), "X")
    for r in parts:
        content = mx_compose.message_content(r)
        assert content["m.mentions"] == {}
        assert not _PILL.search(content.get("formatted_body", "")), content
        assert neutralise_generic(r.plain) == r.plain  # the body under the default rule


@_settings
@given(rt=TREES, name=NAMES, **FIT)
def test_property_email_and_plain_targets_use_the_default_rule(
        rt: RichText, name: str, split: str, links: bool, limit: int | None) -> None:
    caps = Capabilities(text_format=TextFormat.HTML)
    for r in render(post(rt, name=name), _target(caps, split, links, limit), "X"):
        assert neutralise_generic(r.plain) == r.plain
