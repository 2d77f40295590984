"""Config models of the X adapter (the ``[accounts.X]`` table and the platform
keys of a channel)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from adapters.twitter.budget import Caps, Prices
from bridge.contract.adapter import StrictModel
from bridge.contract.media import MediaAccountKeys


class PriceTable(StrictModel):
    """USD per billed unit; X's pay-per-use table of 2026-04 by default."""

    read: float = Field(0.005, ge=0)
    post: float = Field(0.015, ge=0)
    post_with_url: float = Field(0.20, ge=0)
    delete: float = Field(0.010, ge=0)

    def prices(self) -> Prices:
        return Prices(read=self.read, post=self.post, post_with_url=self.post_with_url,
                      delete=self.delete)


class TwitterAccount(MediaAccountKeys):
    consumer_key: str = Field(min_length=1)
    consumer_secret: str = Field(min_length=1)
    access_token: str = Field(min_length=1)
    access_token_secret: str = Field(min_length=1)
    bearer_token: str | None = None
    """App-only token: when given, searches use the app's window (450/15 min)."""
    api_base: str = "https://api.twitter.com"
    """Where the API is; only the emulator (sandbox, tests) changes it."""
    bot_username: str = ""
    premium: bool = False
    """X Premium accounts may post up to 25,000 weighted characters."""
    max_posts_per_day: int = Field(50, ge=0)
    max_usd_per_day: float = Field(2.0, ge=0)
    max_usd_per_month: float = Field(30.0, ge=0)
    monthly_read_budget: int = Field(10_000, ge=0)
    search_share: float = Field(0.5, gt=0, le=1)
    """Fraction of X's 15-minute search window the polling may use."""
    request_timeout: float = Field(30.0, gt=0)
    """Seconds one API call may take, connection included; a stalled call then
    counts as a network error (a create is looked up before it is sent again)."""
    prices: PriceTable = PriceTable()

    def caps(self) -> Caps:
        return Caps(posts_per_day=self.max_posts_per_day, usd_per_day=self.max_usd_per_day,
                    usd_per_month=self.max_usd_per_month,
                    reads_per_month=self.monthly_read_budget)

    @property
    def price_table(self) -> Prices:
        return self.prices.prices()


class TwitterChannel(StrictModel):
    query: str = Field(min_length=1, max_length=512)
    """Recent-search query, e.g. ``#kmers -is:retweet``."""
    mode: Literal["each", "digest", "off"] = "each"
    """Outbound: one post per message, one digest every ``digest_minutes``, or none."""
    digest_minutes: float = Field(15.0, gt=0)
    links_in_digest: bool = False
    """Keep URLs in digest lines (a post with a URL costs $0.20 instead of $0.015)."""
    poll_seconds: float = Field(60.0, gt=0)
    max_poll_seconds: float = Field(900.0, gt=0)
    max_results: int = Field(100, ge=10, le=100)
    max_pages: int = Field(5, ge=1, le=50)
    recheck_after_hours: float = Field(20.0, ge=0)
    """Look each relayed post up once more at this age and propagate deletions
    (X requires deleted content gone within 24 h); the same lookup brings the
    post's ``like_count``, counted on the web; 0 turns both off."""
