"""X needs no @mention from the bridge for any reply it sends (issue 12, item 2):
a reply threads through ``in_reply_to_tweet_id``, and X's "summoned" rule is
about the PARENT (its author mentioned or quoted the bot, or it is the bot's
own post), never about the reply's text.  So the mention rule has no
exception: the consent answer to ``@kmbridge !join`` (a display name that
looks like a handle included) threads under the command with no mention in
its text, by twitter-text's rule (``bridge.contract.mentions.x_mentions``, held to
twitter-text's conformance cases in tests/core/test_mentions.py)."""

from __future__ import annotations

from test_adapter import running
from twitter_support import Running, make_create

from bridge.contract.mentions import x_mentions
from bridge.contract.model import Author, ChannelKey, NativeId, Post, PostId
from bridge.contract.richtext import RichText
from bridge.inbound.relay import CONSENT_REPLIES
from bridge.outbound.render import Target, render


async def test_consent_answer_threads_under_the_command_without_a_mention(
        xemu: Running) -> None:
    st = xemu.emu.state
    async with running(xemu) as (ad, _ctx):
        command = st.create(st.user("dave", "@dave"), "@kmbridge !join")
        for decision in ("in", "out"):
            text = CONSENT_REPLIES[decision].format(name="@dave ＠carol", tag="kmers")
            notice = Post(id=PostId("01JNOTICE0000000000000000" + decision[0].upper()),
                          community="kmers", origin_channel=ChannelKey("kmers/x"),
                          origin_native_id=NativeId(f"notice:{command.id}"), permalink="",
                          author=Author(platform="twitter", handle="@dave",
                                        display_name="@dave"),
                          text=RichText.plain(text), is_notice=True)
            [part] = render(notice, Target(caps=ad.capabilities(ChannelKey("kmers/x")),
                                           hashtag="kmers", append_hashtag=False), "X")
            assert x_mentions(part.plain, at_runs=True) == [], part.plain
            op = make_create(part.plain, f"consent-{decision}", reply_to=command.id)
            r = await ad.send(op)
            sent = st.tweets[r.native_id]
            assert sent.reply_to == command.id          # threads: X allowed the reply
            assert st.mentions(sent) == []              # and it mentions nobody
            assert x_mentions(sent.text, at_runs=True) == []
