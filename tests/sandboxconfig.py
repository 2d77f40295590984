"""The smallest valid config the CLI and config tests start from: two sandbox networks,
``lobby`` and ``garden``, in the community ``kmers``.  Tests edit its text (a typo, a
missing key) to get the config they need."""

from __future__ import annotations


def two_sandboxes(*, data: str = "data", nets: str = "nets", platform: str = "sandbox",
                  bridge: str = "", garden: str = "") -> str:
    """The config as TOML text. *bridge*: extra lines of ``[bridge]``; *platform*: account
    a's platform; *garden*: extra keys of the garden channel."""
    extra = f"{bridge}\n" if bridge else ""
    tail = f"{garden}\n" if garden else ""
    return f"""
[bridge]
data_dir = "{data}"
{extra}
[accounts.a]
platform = "{platform}"
dir = "{nets}"

[accounts.b]
platform = "sandbox"
dir = "{nets}"

[[communities]]
name = "kmers"
hashtag = "kmers"

[[communities.channels]]
account = "a"
network = "lobby"

[[communities.channels]]
account = "b"
network = "garden"
{tail}"""
