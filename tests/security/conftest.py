"""Makes this folder's helper modules (``canary``, ``htmlsafety``) importable: the
project runs pytest in importlib mode and lists each folder's helpers in ``pythonpath``;
this folder is new, so it adds itself here instead of editing the shared config."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
