"""What a process is told and what it reports.

Owns the configuration model and its validation (``config``), the registry of adapter
factories found through entry points (``registry``), the chat-event schedule a community
declares (``schedule``), logging with secret redaction (``logs``) and the Prometheus
metrics (``metrics``).

May import: ``bridge.contract``.
"""
