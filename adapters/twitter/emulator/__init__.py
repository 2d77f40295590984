"""The X API v2 emulator: ``app`` (the routes tweepy calls), ``state`` (the world: users,
posts, search, rate windows), ``wire`` (X's problem bodies)."""
