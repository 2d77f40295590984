"""The static HTML export, and the transcript page it shares with the live site: the
same templates, relative links, no script (a site any web host can serve)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Protocol

from bridge.contract.model import Post
from bridge.features.chatevents import Transcript, build_transcript
from bridge.runtime.schedule import Occurrence, occurrences
from bridge.web.present import PostCard, card, iso, shown_reactions
from bridge.web.site import now_utc, platform_name, templates


class StaticSite:
    """The two things :func:`bridge.web.app.render_transcript` needs."""

    def __init__(self, name_of: Callable[[str], str]) -> None:
        self.env = templates()
        self.name_of = name_of

    def render(self, template: str, **ctx: Any) -> str:
        return self.env.get_template(template).render(**ctx)

    def network_of(self, post: Post) -> str:
        return self.name_of(post.origin_channel)


class Renderer(Protocol):
    def render(self, template: str, **ctx: Any) -> str: ...
    def network_of(self, post: Post) -> str: ...


def render_transcript(site: Renderer, comm: Any, occ: Occurrence, t: Transcript, *,
                      static: bool = False, live: bool = False, last_id: str = "",
                      reactions: Mapping[str, Mapping[str, int]] | None = None) -> str:
    """The transcript page (also written by the static HTML export).  *live*: the
    chat is running or coming up, and the page follows the live stream from
    *last_id*; *reactions*: each post's reaction counts by shown network name."""
    def c(p: Any) -> Any:
        return card(p, site.network_of(p), reactions=(reactions or {}).get(p.id))

    questions = [{"number": q.number, "question": c(q.post) if q.post else None,
                  "answers": [c(a) for a in q.answers]} for q in t.questions]
    return site.render("transcript.html", comm=comm, occ=occ, t=t, questions=questions,
                       other=[c(p) for p in t.other], static=static,
                       running=occ.contains(now_utc()), upcoming=now_utc() < occ.start,
                       live=live and not static, last_id=last_id)


async def write_site(store: Any, config: Any, scope: Any, out: str, now: datetime,
                     batches: AsyncIterator[list[tuple[Post, float | None]]],
                     name_of: Callable[[str], str]) -> None:
    site = StaticSite(name_of)
    comm = scope.community
    await asyncio.to_thread(os.makedirs, out, exist_ok=True)
    posts: list[Post] = []
    pages: list[dict[str, Any]] = []
    page_cards: list[PostCard] = []
    files: dict[str, str] = {}

    def flush(last: bool) -> None:
        number = len(pages) + 1
        name = f"archive-{number}.html"
        pages.append({"file": name, "count": len(page_cards),
                      "first": page_cards[0].created_human, "last": page_cards[-1].created_human})
        files[name] = site.render("static_archive.html", comm=comm, cards=list(page_cards),
                                  number=number, has_next=not last, static=True)
        page_cards.clear()

    async for rows in batches:
        for post, edited_at in rows:
            posts.append(post)
            page_cards.append(card(post, name_of(post.origin_channel), edited_at=edited_at))
            if len(page_cards) >= 500:
                flush(False)
    if page_cards:
        flush(True)
    elif pages:  # the last full page has no newer one
        last = pages[-1]
        files[last["file"]] = files[last["file"]].replace(
            f'<a href="archive-{len(pages) + 1}.html">Newer</a>', "")
    windows: list[Occurrence] = list(scope.windows) if scope.windows is not None else [
        o for ev in comm.settings.events
        for o in occurrences(ev, posts[0].created_at if posts else now, now) if o.start <= now]
    counted = await store.run(lambda tx: tx.reaction_counts([p.id for p in posts]))
    reactions = {pid: shown_reactions(c, lambda n: platform_name(config, n))
                 for pid, c in counted.items()}
    transcripts = []
    for occ in sorted(windows, key=lambda o: o.start):
        t = build_transcript(occ, posts, site.network_of)
        if not t.counts:
            continue
        name = f"{occ.event.id}-{occ.key}.html"
        files[name] = render_transcript(site, comm, occ, t, static=True, reactions=reactions)
        transcripts.append({"file": name, "answers": t.answer_count, "people": t.people,
                            "title": f"{occ.event.title}, "
                                     f"{occ.local_start():%Y-%m-%d %H:%M %Z}"})
    files["index.html"] = site.render("static_index.html", comm=comm, pages=pages,
                                      transcripts=transcripts, static=True,
                                      exported=iso(now.astimezone(UTC)))
    files["style.css"] = resources.files("bridge.web").joinpath(
        "static", "style.css").read_text("utf-8")
    await asyncio.to_thread(_write_all, out, files)


def _write_all(out: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            f.write(text)
