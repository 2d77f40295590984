"""Who asks the questions on the live page (:mod:`bridge.web.roles`): the
transcript's rules, hosts matched by account, never by display name."""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.contract.model import Author, ChannelKey, NativeId, Post, PostId
from bridge.contract.textconv import from_plain
from bridge.runtime.schedule import ChatEventConfig
from bridge.web.roles import Roles

_n = 0


def post(text: str, handle: str, name: str = "", platform: str = "mastodon",
         notice: bool = False) -> Post:
    global _n
    _n += 1
    return Post(id=PostId(f"01HB{_n:022d}"), community="kmers",
                origin_channel=ChannelKey("kmers/masto"), origin_native_id=NativeId(str(_n)),
                permalink="", text=from_plain(text), created_at=datetime.now(UTC),
                author=Author(platform=platform, handle=handle, display_name=name or handle),
                is_notice=notice)


def event(hosts: list[str]) -> ChatEventConfig:
    return ChatEventConfig(id="weekly", title="chat", day="thursday", time="17:00",
                           hosts=hosts)


def test_a_hosts_question_and_the_answers() -> None:
    roles = Roles([event(["mastodon:@host@example.social"])])
    q = post("Q3: what now? #kmers", "@host@example.social", "The Host")
    r = roles.of(q)
    assert (r.label, r.host, r.question) == ("Q3", True, True)
    assert roles.of(post("@host A3 - this", "@m@example.org")).label == "A3"
    reply = roles.of(post("no number, but a reply", "@m@example.org"), parent=q)
    assert (reply.label, reply.host) == ("A3", False)
    assert roles.of(post("the host chatting", "@host@example.social")).label == ""
    assert roles.of(post("the host chatting", "@host@example.social")).host


def test_hosts_are_accounts_not_names() -> None:
    roles = Roles([event(["mastodon:@host@example.social"])])
    imposter = post("Q1: fake question", "@mallory@evil.example", "@host@example.social")
    r = roles.of(imposter)
    assert (r.label, r.host) == ("", False)
    other_network = post("Q1: same handle, other network", "@host@example.social",
                         platform="bluesky")
    assert roles.of(other_network).label == ""
    # An unnumbered reply to a look-alike question is no answer.
    assert roles.of(post("reply", "@m@example.org"), parent=imposter).label == ""


def test_without_named_hosts_anyone_asks_and_nobody_is_badged() -> None:
    for roles in (Roles([]), Roles([event([])]),
                  Roles([event(["twitter:@kmhost"]), event([]).model_copy(update={"id": "b"})])):
        r = roles.of(post("Q2 anyone may ask", "@m@example.org"))
        assert (r.label, r.host) == ("Q2", False)


def test_notices_and_long_posts() -> None:
    roles = Roles([])
    assert roles.of(post("Q1: the bridge's notice", "bridge", notice=True)).label == ""
    long = post("A4: " + "word " * 20000 + "\n\nQ9: not the first paragraph", "@m@example.org")
    assert roles.of(long).label == "A4"
    assert roles.of(post("intro\n\nQ5: second paragraph", "@m@example.org")).label == ""
