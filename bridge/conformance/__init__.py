"""The conformance kit: the end-to-end scenarios every network must pass, over any
network's sandbox, and the fault machinery the fault suites share.

``kit``        one network under test opposite the lobby, the real relay between them.
``scenarios``  the shared scenarios (post, replies, edits, deletes, long posts and their
               edits, mentions, consent, media, kill -9, outages, poison), each skipped
               with a reason where the network lacks what it needs.
``fleet``      the registry's networks as sandboxes, a real ``hashbridge run`` process
               over them, and the exactly-once/in-order checks counted on the platforms.
``faults``     fault proxies in front of a sandbox's endpoints, answering with the
               platform's own errors (:meth:`~bridge.contract.sandbox.PlatformSandbox.failure`).
``faultproxy`` the TCP/HTTP/SMTP/IMAP fault-injecting proxy itself.

A new network gets all of it by providing its sandbox (``AdapterFactory.sandbox``):
``docs/adding-a-network.md``.

May import: ``contract``, ``runtime``, ``daemon`` (the harness and the bridge it runs).
"""
