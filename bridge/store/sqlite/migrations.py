"""Numbered schema migrations, in SQLite's dialect.  Append only: never edit a
released step.

The numbers are the store's, not SQLite's: another backend writes the same steps in
its own dialect, step N meaning the same tables there (the store contract suite
checks both behave alike).  ``PRAGMA user_version`` holds the number of steps
applied.  A database with a higher number than this code knows was written by a
newer hashbridge and is refused, never touched.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the relay's tables
    """
    CREATE TABLE posts (
        id TEXT PRIMARY KEY,
        community TEXT NOT NULL,
        origin_channel TEXT NOT NULL,
        origin_native_id TEXT NOT NULL,
        permalink TEXT NOT NULL DEFAULT '',
        author_platform TEXT NOT NULL,
        author_handle TEXT NOT NULL,
        author_name TEXT NOT NULL DEFAULT '',
        author_url TEXT NOT NULL DEFAULT '',
        text_json TEXT NOT NULL,
        attachments_json TEXT NOT NULL DEFAULT '[]',
        reply_to TEXT,
        content_warning TEXT NOT NULL DEFAULT '',
        language TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        edited_at REAL,
        deleted_at REAL,
        is_notice INTEGER NOT NULL DEFAULT 0,
        text_hash TEXT NOT NULL DEFAULT '',
        hidden INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX posts_by_community ON posts(community, created_at);
    CREATE INDEX posts_by_hash ON posts(community, text_hash, created_at);

    -- Every native id we know for a Post: its origin, our copies, and aliases
    -- (other parts of a split thread, other ids of the same copy).
    CREATE TABLE native_ids (
        channel TEXT NOT NULL,
        native_id TEXT NOT NULL,
        post_id TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('origin', 'copy', 'alias')),
        part INTEGER NOT NULL DEFAULT 0,
        subject TEXT NOT NULL DEFAULT '',
        permalink TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (channel, native_id)
    );
    CREATE INDEX native_ids_by_post ON native_ids(post_id, channel, part);

    -- The outbox.  seq gives FIFO order per channel.
    CREATE TABLE deliveries (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        post_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        op TEXT NOT NULL CHECK (op IN ('create', 'edit', 'delete')),
        state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'dead', 'skipped')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        parts_done INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        done_at REAL
    );
    CREATE INDEX deliveries_pending ON deliveries(channel, seq) WHERE state = 'pending';
    CREATE INDEX deliveries_by_post ON deliveries(post_id, channel);
    CREATE INDEX deliveries_dead ON deliveries(state) WHERE state = 'dead';

    CREATE TABLE cursors (
        account TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (account, name)
    );

    CREATE TABLE consent (
        platform TEXT NOT NULL,
        handle TEXT NOT NULL,
        decision TEXT NOT NULL CHECK (decision IN ('in', 'out')),
        decided_at REAL NOT NULL,
        PRIMARY KEY (platform, handle)
    );

    CREATE TABLE blocks (
        platform TEXT NOT NULL,
        handle TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        PRIMARY KEY (platform, handle)
    );

    -- What the policy refused, so nothing disappears without a trace.
    CREATE TABLE rejections (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL,
        native_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_at REAL NOT NULL
    );

    CREATE TABLE health (
        account TEXT PRIMARY KEY,
        platform TEXT NOT NULL,
        state TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        updated_at REAL NOT NULL
    );
    """,
    # 2: who is who.  A post's author's stable account id (X user ids: a handle
    # can be renamed and taken by someone else); links between one person's
    # accounts on different networks, made from both sides (!link), and the
    # pending first halves of such links.
    """
    ALTER TABLE posts ADD COLUMN author_id TEXT NOT NULL DEFAULT '';

    CREATE TABLE identity_links (
        a TEXT NOT NULL,
        b TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (a, b)
    );
    CREATE INDEX identity_links_by_b ON identity_links(b);

    CREATE TABLE link_claims (
        code TEXT PRIMARY KEY,
        identity TEXT NOT NULL,
        label TEXT NOT NULL,
        target_platform TEXT NOT NULL,
        target_handle TEXT NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX link_claims_by_identity ON link_claims(identity);
    """,
    # 3: rejections say what kind they are (policy, unreadable, too large, relay
    # error) and are found by event: an event read twice is recorded once.
    """
    ALTER TABLE rejections ADD COLUMN kind TEXT NOT NULL DEFAULT 'policy';
    CREATE INDEX rejections_event ON rejections(channel, native_id);
    CREATE INDEX rejections_kind ON rejections(kind, id);
    """,
    # 4: what adapters must remember beyond their cursors (the email adapter's
    # threads, digest queue and send journal; formerly a side file per adapter),
    # per account and namespace, in insertion order (seq).
    """
    CREATE TABLE adapter_state (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        account TEXT NOT NULL,
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE (account, namespace, key)
    );
    """,
    # 5: reactions (likes, favourites, Matrix reactions) counted per post: one
    # row per post, network, reactor and key; *count* is 1 but for an aggregate
    # read from the platform (X's like_count: reactor ''); *reaction_id* is the
    # reaction's own id, by which its removal is found.
    """
    CREATE TABLE reactions (
        post_id TEXT NOT NULL,
        network TEXT NOT NULL,
        reactor TEXT NOT NULL,
        key TEXT NOT NULL,
        reaction_id TEXT NOT NULL DEFAULT '',
        count INTEGER NOT NULL DEFAULT 1,
        created_at REAL NOT NULL,
        PRIMARY KEY (post_id, network, reactor, key)
    );
    CREATE INDEX reactions_by_id ON reactions(network, reaction_id) WHERE reaction_id <> '';
    """,
    # 6 (after 5, the reactions table; self-contained, so the steps reorder
    # freely): a post's poll and quote (see bridge.contract.model.extras_to_json).
    """
    ALTER TABLE posts ADD COLUMN extras_json TEXT NOT NULL DEFAULT '{}';
    """,
]


def latest_version() -> int:
    return len(MIGRATIONS)
