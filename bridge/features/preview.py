"""``hashbridge preview``: how a post would look on every target channel."""

from __future__ import annotations

from bridge.contract.adapter import Capabilities
from bridge.contract.model import Author, ChannelKey, NativeId, Post, new_post_id
from bridge.contract.services import Services
from bridge.contract.textconv import from_plain
from bridge.outbound.render import DEFAULT_ATTRIBUTION, Target, render
from bridge.runtime.config import Config


def preview(cfg: Config, text: str, *, origin: str | None = None, author: str = "Alice",
            caps: dict[str, Capabilities] | None = None) -> str:
    """Render *text* as if posted on *origin*; capabilities come from the
    adapters (offline: their declared defaults) unless given."""
    channels = cfg.all_channels()
    src = next((c for c in channels if c.key == origin), channels[0]) if origin else channels[0]
    acct = cfg.accounts[src.account]
    network = str(getattr(acct.options, "display_name", None) or acct.factory.display_name)
    post = Post(id=new_post_id(), community=src.community, origin_channel=src.key,
                origin_native_id=NativeId("preview"), permalink="https://example.org/p/1",
                author=Author(platform=src.platform, handle=author.lower(), display_name=author),
                text=from_plain(text))
    lines = [f"from {src.key} ({network}), as {author}:"]
    comm = next(c for c in cfg.communities if c.name == src.community)
    for ch in comm.channels:
        if ch.key == src.key or not ch.writes:
            continue
        target_caps = (caps or {}).get(ch.key) or _offline_caps(cfg, ch.key)
        c = ch.common
        target = Target(caps=target_caps, hashtag=ch.hashtag,
                        attribution=c.attribution or DEFAULT_ATTRIBUTION,
                        append_hashtag=c.append_hashtag, split=c.split, links=c.links,
                        max_length=c.max_length)
        parts = render(post, target, network, reference=post.permalink)
        limit = target_caps.max_length or c.max_length
        lines.append(f"\n→ {ch.key} ({ch.platform}), {len(parts)} part"
                     f"{'s' if len(parts) != 1 else ''}"
                     + (f", limit {limit}" if limit else ", no length limit"))
        for i, r in enumerate(parts, 1):
            n = target_caps.count(r.plain)
            lines.append(f"  [{i}] ({n} by the platform's count)")
            lines.extend("      " + line for line in r.plain.splitlines())
    return "\n".join(lines)


def _offline_caps(cfg: Config, key: ChannelKey | str) -> Capabilities:
    """The adapter's capabilities without connecting (a factory may expose
    ``default_capabilities``; otherwise no limits are assumed)."""
    ch = cfg.channel(key)
    acct = cfg.accounts[ch.account]
    fn = getattr(acct.factory, "default_capabilities", None)
    if callable(fn):
        result = fn(acct.options, ch.options)
        if isinstance(result, Capabilities):
            return result
    adapter = acct.factory.create(acct.options, (), Services())
    try:
        return adapter.capabilities(ch.key)
    except Exception:
        return Capabilities()
