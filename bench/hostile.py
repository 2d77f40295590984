"""CPU per post for hostile input shapes, through the real converters (issue 12, item 3).

Each shape goes in through every platform's own inbound converter that can
carry it (Mastodon ``parse_status``, Matrix ``parse_event``, email
``parse_list_mail`` of a real MIME message, X ``tweet_to_posted``), and the
result goes out through ``bridge.outbound.render.render`` to each kind of target (X
with its 280 weighted characters and thread split, Mastodon 500, Matrix
HTML, email HTML).  CPU is this process's (``time.process_time``), the median
of ``--repeat`` runs; the target is at most 50 ms per post for each step.

    python bench/hostile.py                 # every shape
    python bench/hostile.py --only mentions_10000,mail_1mb --repeat 5

One line per shape: ``hostile_<shape> worst_ms W (inbound ...; render ...)``,
W the worst single step (one converter or one target's render).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import load_note

from adapters.email.convert import Identity, ListMail, ListSpec, parse_list_mail
from adapters.mastodon.convert import parse_status, status_length
from adapters.matrix.convert import HTML_FORMAT, parse_event
from adapters.twitter.compose import weighted_length
from adapters.twitter.convert import tweet_to_posted
from bridge.contract.adapter import Capabilities, TextFormat
from bridge.contract.model import Author, ChannelKey, NativeId, Post, Posted, PostId
from bridge.contract.richtext import RichText
from bridge.contract.textconv import from_markdown, from_plain
from bridge.inbound.policy import fit_size
from bridge.outbound.render import Target, render

CH = ChannelKey("bench/hostile")
KB = 1024
TARGETS = {
    "x": Capabilities(max_length=280, count=weighted_length, text_format=TextFormat.PLAIN,
                      reply=True, needs_hashtag=True, links_cost=True),
    "mastodon": Capabilities(max_length=500, count=status_length,
                             text_format=TextFormat.PLAIN, reply=True, needs_hashtag=True),
    "matrix": Capabilities(max_length=24000, count=lambda s: len(s.encode()),
                           text_format=TextFormat.HTML, reply=True, formatted=True),
    "email": Capabilities(text_format=TextFormat.HTML, formatted=True, reply=True),
}
SPEC = ListSpec(channel=CH, list_id="bench.lists.test", address="bench@lists.test",
                subject_tag="bench")
ME = Identity(address="bridge@bridge.test", domain="bridge.test", salt=b"salt")


# ------------------------------------------------------------------ inbound paths

def via_mastodon(html: str) -> RichText:
    ev = parse_status({"id": "1", "content": html, "visibility": "public",
                       "url": "https://m.example/@a/1", "created_at": "2026-01-01T00:00:00Z",
                       "account": {"acct": "a", "url": "https://m.example/@a"}}, channel=CH)
    assert isinstance(ev, Posted), ev
    return ev.text


def via_matrix(body: str, html: str | None = None) -> RichText:
    content: dict[str, Any] = {"msgtype": "m.text", "body": body}
    if html is not None:
        content.update(format=HTML_FORMAT, formatted_body=html)
    ev = parse_event({"type": "m.room.message", "event_id": "$e", "sender": "@a:m.example",
                      "origin_server_ts": 1_700_000_000_000, "content": content},
                     channel=CH, room_id="!r:m.example", homeserver="https://m.example")
    assert isinstance(ev, Posted), ev
    return ev.text


@functools.cache  # the input is built once, not timed with the conversion
def mail(body: str, subtype: str = "plain") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@members.test>"
    msg["To"] = "bench@lists.test"
    msg["Subject"] = "[bench] hostile"
    msg["List-Id"] = "Bench <bench.lists.test>"
    msg["Message-ID"] = "<hostile@members.test>"
    msg.set_content(body, subtype=subtype, cte="8bit" if body.isascii() else "base64")
    return b"Return-Path: <bench-bounces@lists.test>\r\n" + msg.as_bytes()


def via_email(raw: bytes) -> RichText:
    res = parse_list_mail(raw, SPEC, ME)
    assert isinstance(res, ListMail), res
    return res.event.text


def via_x(text: str, entities: dict[str, Any]) -> RichText:
    ev = tweet_to_posted({"id": "1", "author_id": "9", "text": text[:280],
                          "note_tweet": {"text": text, "entities": entities}}, CH,
                         users={"9": {"id": "9", "username": "a", "name": "A"}}, media={})
    assert isinstance(ev, Posted), ev
    return ev.text


@functools.cache
def x_entities(text: str, unit: str, kind: str) -> dict[str, Any]:
    out = []
    for i in range(0, len(text) - 1, len(unit)):
        body = text[i + 1:i + len(unit)].strip()
        out.append({"start": i, "end": i + 1 + len(body),
                    **({"username": body} if kind == "mentions" else {"tag": body})})
    return {kind: out}


# ------------------------------------------------------------------ shapes

def nest(unit: str, size: int, inner: str = "deep") -> str:
    return unit * (size // len(unit)) + inner


MASTO_MENTION = ('<span class="h-card"><a href="https://m.example/@a" class="u-url mention">'
                 '@<span>a</span></a></span> ')
MASTO_TAG = ('<a href="https://m.example/tags/a" class="mention hashtag" rel="tag">'
             '#<span>a</span></a> ')
WORDS = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod. "


def shapes() -> dict[str, dict[str, Callable[[], RichText]]]:
    """Each shape: {step name: a function converting one post inbound}."""
    deep_units = ["<ul><li>", "<b>", "<blockquote>", "<em><div>", "<span>x", "<dl><dt>"]
    mentions = "@a " * 10_000
    tags = "#a " * 10_000
    mail_plain = (WORDS * 14 + "\n") * (1_000 * KB // (len(WORDS) * 14 + 1))
    mail_html = "<p>" + "</p>\n<p>".join([WORDS * 14] * (1_000 * KB // (len(WORDS) * 14 + 8)))
    return {
        # 64 KB: a Matrix event's limit; Mastodon relays what remote servers send
        "deep_html_64kb": {
            **{f"mastodon {u}": (lambda u=u: via_mastodon(nest(u, 64 * KB)))
               for u in deep_units},
            **{f"matrix {u}": (lambda u=u: via_matrix("deep", nest(u, 60 * KB)))
               for u in deep_units},
            **{f"email {u}": (lambda u=u: via_email(mail(nest(u, 64 * KB), "html")))
               for u in deep_units},
        },
        "deep_markdown_64kb": {
            f"textconv.from_markdown {u!r}": (lambda u=u: from_markdown(nest(u, 64 * KB)))
            for u in ["> ", "*a ", "**", "- ", "> - ", "["]
        },
        "deep_plain_quotes_64kb": {
            "matrix": lambda: via_matrix(nest(">", 60 * KB, " deep")),
            "email": lambda: via_email(mail(nest(">", 64 * KB, " deep"))),
        },
        "mentions_10000": {
            "mastodon": lambda: via_mastodon("<p>" + MASTO_MENTION * 10_000 + "</p>"),
            "matrix plain": lambda: via_matrix(mentions),
            "matrix html": lambda: via_matrix(mentions, f"<p>{mentions}</p>"),
            "email": lambda: via_email(mail(mentions)),
            "x": lambda: via_x(mentions, x_entities(mentions, "@a ", "mentions")),
        },
        "tags_10000": {
            "mastodon": lambda: via_mastodon("<p>" + MASTO_TAG * 10_000 + "</p>"),
            "matrix plain": lambda: via_matrix(tags),
            "matrix html": lambda: via_matrix(tags, f"<p>{tags}</p>"),
            "email": lambda: via_email(mail(tags)),
            "x": lambda: via_x(tags, x_entities(tags, "#a ", "hashtags")),
        },
        "links_64kb": {
            "matrix": lambda: via_matrix(nest("https://e.example/a?b=c) ", 60 * KB)),
            "email": lambda: via_email(mail(nest("https://e.example/" + "." * 60 + " ",
                                                  64 * KB))),
        },
        "mail_1mb": {
            "email plain": lambda: via_email(mail(mail_plain)),
            "email html": lambda: via_email(mail(mail_html, "html")),
            "email one line": lambda: via_email(mail(WORDS * (1_000 * KB // len(WORDS)))),
        },
        "post_40000_chars": {
            "textconv.from_plain": lambda: from_plain((WORDS * 600)[:40_000]),
        },
    }


def cpu_ms(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.process_time()
        result = fn()
        times.append((time.process_time() - t0) * 1000)
    return statistics.median(times), result


def post_of(rt: RichText) -> Post:
    return Post(id=PostId("01HOSTILE"), community="bench", origin_channel=CH,
                origin_native_id=NativeId("1"), permalink="https://m.example/@a/1",
                author=Author(platform="mastodon", handle="a@m.example", display_name="A"),
                text=rt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma-separated shape names")
    ap.add_argument("--repeat", type=int, default=3, help="runs per step (median shown)")
    ap.add_argument("--no-render", action="store_true", help="inbound conversion only")
    ap.add_argument("--max-post-chars", type=int, default=40_000,
                    help="the relay's max_post_chars (the text is cut to it before rendering)")
    args = ap.parse_args()
    wanted = {s for s in args.only.split(",") if s}
    for name, steps in shapes().items():
        if wanted and name not in wanted:
            continue
        inbound: list[tuple[str, float]] = []
        outbound: dict[str, float] = {}
        biggest: RichText | None = None
        for step, fn in steps.items():
            ms, rt = cpu_ms(fn, args.repeat)
            inbound.append((step, ms))
            if biggest is None or len(rt.to_json()) > len(biggest.to_json()):
                biggest = rt
        if biggest is not None and not args.no_render:
            # as the relay does: a text over max_post_chars is cut first
            post = post_of(fit_size(biggest, args.max_post_chars)[0])
            for target, caps in TARGETS.items():
                ms, _ = cpu_ms(lambda caps=caps, post=post: render(
                    post, Target(caps=caps, hashtag="bench"), "Net"), args.repeat)
                outbound[target] = ms
        worst_in = max(inbound, key=lambda x: x[1])
        worst = max([worst_in[1], *outbound.values()])
        ins = ", ".join(f"{s} {ms:.0f}" for s, ms in inbound)
        outs = ", ".join(f"{t} {ms:.0f}" for t, ms in outbound.items())
        print(f"hostile_{name} worst_ms {worst:.0f}  (inbound ms: {ins}; "
              f"render ms of the largest result: {outs or 'skipped'}; "
              f"median of {args.repeat}; {load_note()})", flush=True)


if __name__ == "__main__":
    main()
