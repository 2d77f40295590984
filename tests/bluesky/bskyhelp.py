"""Records in the shapes the PDS's firehose carries them (DAG-CBOR decoded: CIDs
are raw bytes, facets and their index carry ``$type``), for the converter tests
and the benchmark.  Shapes copied from the local PDS 0.5.35's firehose."""

from __future__ import annotations

import hashlib
from typing import Any

import libipld

DID = "did:plc:gp7oicfimj3hbre2trxw4ja2"
BOT = "did:plc:bridgebotbridgebotbridgeb"
PDS = "http://localhost:44979"
CID = "bafyreiazzv2mazmfng6eh2dxslbcjfilgtqs222dsw43rdc2x5u3ku2aga"
BLOB = (b"\x01U\x12 k\x7f\xa44\xf9*\x8b\x80\xaa\xb0-\x9b\xf1\xa1.I\xff\xca"
        b"\xe4$\xe4\x01:\x1cOh\xb6~=+\xbc\xd0")


def uri(rkey: str = "3kabcdefghij2", did: str = DID) -> str:
    return f"at://{did}/app.bsky.feed.post/{rkey}"


def facet(start: int, end: int, **feature: Any) -> dict[str, Any]:
    kind = next(iter(feature))
    feat: dict[str, Any] = {"$type": f"app.bsky.richtext.facet#{kind}"}
    feat.update({"tag": feature["tag"]} if kind == "tag" else
                {"uri": feature["link"]} if kind == "link" else {"did": feature["mention"]})
    return {"$type": "app.bsky.richtext.facet",
            "index": {"$type": "app.bsky.richtext.facet#byteSlice", "byteStart": start,
                      "byteEnd": end}, "features": [feat]}


def spans(text: str, part: str) -> tuple[int, int]:
    """UTF-8 byte span of the first *part* in *text*."""
    raw, p = text.encode(), part.encode()
    s = raw.index(p)
    return s, s + len(p)


def post(text: str, *, facets: list[dict[str, Any]] | None = None, **extra: Any
         ) -> dict[str, Any]:
    rec: dict[str, Any] = {"text": text, "$type": "app.bsky.feed.post",
                           "createdAt": "2026-12-07T05:36:53.828Z"}
    if facets:
        rec["facets"] = facets
    rec.update(extra)
    return rec


def tagged(text: str, tag: str = "kmers") -> dict[str, Any]:
    """A post whose ``#tag`` in *text* carries a tag facet."""
    return post(text, facets=[facet(*spans(text, "#" + tag), tag=tag)])


def images(*alts: str) -> dict[str, Any]:
    return {"$type": "app.bsky.embed.images", "images": [
        {"alt": alt, "$type": "app.bsky.embed.images#image",
         "image": {"ref": BLOB, "size": 70, "$type": "blob", "mimeType": "image/png"}}
        for alt in alts]}


def strong(u: str) -> dict[str, Any]:
    return {"uri": u, "cid": CID}


def commit_frame(seq: int, repo: str, ops: list[tuple[str, str, dict[str, Any] | None]],
                 *, time: str = "2026-12-07T05:36:53.900Z") -> bytes:
    """A ``#commit`` frame with *ops* ``(action, path, record)``: the records go into
    the CAR blocks under their real CIDs (a delete has none)."""
    blocks: list[tuple[bytes, bytes]] = []
    out_ops = []
    for action, path, record in ops:
        cid = None
        if record is not None:
            data = libipld.encode_dag_cbor(record)
            cid = _cid_for(data)
            blocks.append((cid, data))
        out_ops.append({"action": action, "path": path, "cid": cid})
    body = {"ops": out_ops, "rev": "3n42mam3ccc2s", "seq": seq, "repo": repo, "time": time,
            "blobs": [], "since": None, "blocks": car(blocks), "commit": blocks[0][0]
            if blocks else _cid_for(b"x"), "rebase": False, "tooBig": False}
    return libipld.encode_dag_cbor({"t": "#commit", "op": 1}) + libipld.encode_dag_cbor(body)


def info_frame(name: str) -> bytes:
    return (libipld.encode_dag_cbor({"t": "#info", "op": 1})
            + libipld.encode_dag_cbor({"name": name, "message": "test"}))


def _cid_for(data: bytes) -> bytes:
    return b"\x01\x71\x12\x20" + hashlib.sha256(data).digest()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def car(blocks: list[tuple[bytes, bytes]]) -> bytes:
    """A CARv1 file holding *blocks* (``(cid bytes, DAG-CBOR bytes)``)."""
    root = blocks[0][0] if blocks else _cid_for(b"x")
    header = libipld.encode_dag_cbor({"version": 1, "roots": [root]})
    out = _varint(len(header)) + header
    for cid, data in blocks:
        out += _varint(len(cid) + len(data)) + cid + data
    return out


def account_model(table: dict[str, Any]) -> Any:
    """The adapter's own account model of a sandbox's account table (without the
    core's keys, such as ``catchup_window``, which the config loader takes first)."""
    from adapters.bluesky.config import BlueskyAccount
    from bridge.runtime.config import AccountCommon

    return BlueskyAccount(**{k: v for k, v in table.items() if k not in AccountCommon.model_fields})
