"""The web view: live page per community, chat events, feeds, exports, admin.

``serve_web(bridge)`` is started by ``hashbridge run`` (and the demo) as an
extra task when ``[bridge.web]`` is configured.  It also runs the chat-event
announcer, which needs the public URL for its links.  ``export`` writes a
community's archive (JSONL, CSV, mbox, a static HTML site) for the CLI and the web.

May import: anything in ``bridge`` but ``cli``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.daemon.supervisor import Bridge

log = logging.getLogger("hashbridge.web")


def _split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return (host.strip("[]") or "127.0.0.1"), int(port or 8080)


async def serve_web(bridge: Bridge) -> None:
    """Serve the web view until cancelled; puts the URL in ``bridge.services.web_url``.

    When the configured port is taken and the address is a loopback one (the
    demo, a developer machine) a free port is used instead and logged; a
    production address that is taken is an error (a load balancer points there).
    """
    from aiohttp import web

    from bridge.features.chatevents import run_announcements
    from bridge.runtime.config import WebSettings
    from bridge.web.app import make_app
    from bridge.web.guard import POOL, GuardedSite, Pool, fit_to_open_files, quiet_logs
    from bridge.web.site import SITE

    settings = bridge.config.bridge.web
    limits = settings if settings is not None else WebSettings()
    host, port = _split_listen(limits.listen)
    pool = Pool(fit_to_open_files(limits.max_connections), limits.header_timeout_seconds)
    app = make_app(bridge)
    app[POOL] = pool
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0,
                           keepalive_timeout=max(75.0, limits.header_timeout_seconds))
    await runner.setup()
    unquiet = quiet_logs()
    try:
        site = GuardedSite(runner, host, port, pool)
        try:
            await site.start()
        except OSError as e:
            if e.errno != errno.EADDRINUSE or host not in ("127.0.0.1", "localhost", "::1"):
                raise
            log.warning("%s:%d is in use; serving on a free port instead", host, port)
            site = GuardedSite(runner, host, 0, pool)
            await site.start()
        addresses = runner.addresses
        actual = addresses[-1][1] if addresses else port
        url = f"http://{host}:{actual}"
        bridge.services.web_url = url
        public = (settings.public_url.rstrip("/") if settings and settings.public_url
                  else url)
        shared = app[SITE]
        shared.public_url = public
        log.info("web view on %s", url)
        # The live pump runs inside the app; the announcer needs the public URL.
        await run_announcements(bridge, base_url=lambda: public,
                                transcript_of=shared.transcript)
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
        unquiet()
