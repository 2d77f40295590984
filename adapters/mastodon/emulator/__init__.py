"""The Mastodon API emulator: ``app`` (the routes Mastodon.py calls), ``state`` (the data),
``instance`` (the instance bodies), ``server`` (runs it on loopback for tests and the demo)."""
