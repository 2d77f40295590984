"""The emulated instance's ``/api/v1/instance`` and ``/api/v2/instance`` bodies,
shaped as Mastodon 4.6.4 sends them (keys the OpenAPI spec requires included)."""

from __future__ import annotations

from typing import Any

from adapters.mastodon.emulator.state import EmulatorState

MIME_TYPES = ["image/jpeg", "image/png", "image/gif", "image/webp", "video/mp4", "video/webm",
         "audio/mpeg", "audio/ogg"]


def instance_v2(st: EmulatorState) -> dict[str, Any]:
    access = {"local": "public", "remote": "public"}
    return {
        "domain": st.domain, "title": "Mastodon emulator", "version": st.version,
        "source_url": "https://github.com/mastodon/mastodon", "description": "",
        "usage": {"users": {"active_month": len(st.accounts)}},
        # An uploaded thumbnail is served from the media host; the default one
        # from the instance's own assets.
        "thumbnail": {"url": f"{st.files_url}/site_uploads/files/000/000/001/@1x/thumb.png"
                      if st.files_url else f"{st.base_url}/packs/images/preview.png"},
        "icon": [],
        "languages": ["en"],
        "configuration": {
            "urls": {"streaming": st.base_url.replace("http", "ws", 1), "status": None},
            "vapid": {"public_key": "emulated"},
            "accounts": {"max_featured_tags": 10, "max_pinned_statuses": 5},
            "statuses": {"max_characters": st.max_characters,
                         "max_media_attachments": st.max_media_attachments,
                         "characters_reserved_per_url": st.url_weight},
            "media_attachments": {"description_limit": 1500, "image_matrix_limit": 33177600,
                                  "image_size_limit": 16777216, "supported_mime_types": MIME_TYPES,
                                  "video_frame_rate_limit": 120, "video_matrix_limit": 8294400,
                                  "video_size_limit": 103809024},
            "polls": {"max_options": 4, "max_characters_per_option": 50,
                      "min_expiration": 300, "max_expiration": 2629746},
            "translation": {"enabled": False},
            "timelines_access": {"live_feeds": access, "hashtag_feeds": access,
                                 "trending_link_feeds": access},
        },
        "registrations": {"enabled": False, "approval_required": False, "message": None},
        "api_versions": {"mastodon": 11},
        "contact": {"email": "admin@mastodon.example", "account": None},
        "rules": st.rules_json()}


def instance_v1(st: EmulatorState) -> dict[str, Any]:
    return {
        "uri": st.domain, "title": "Mastodon emulator", "short_description": "",
        "description": "", "email": "admin@mastodon.example", "version": st.version,
        "urls": {"streaming_api": st.base_url.replace("http", "ws", 1)},
        "stats": {"user_count": len(st.accounts), "status_count": len(st.statuses),
                  "domain_count": 0},
        "thumbnail": None, "languages": ["en"], "registrations": False,
        "approval_required": False, "invites_enabled": False,
        "configuration": {"accounts": {"max_featured_tags": 10},
                          "statuses": {"max_characters": st.max_characters,
                                       "max_media_attachments": st.max_media_attachments,
                                       "characters_reserved_per_url": st.url_weight},
                          "media_attachments": {"supported_mime_types": MIME_TYPES,
                                                "image_size_limit": 16777216,
                                                "image_matrix_limit": 33177600,
                                                "video_size_limit": 103809024,
                                                "video_frame_rate_limit": 120,
                                                "video_matrix_limit": 8294400},
                          "polls": {"max_options": 4, "max_characters_per_option": 50,
                                    "min_expiration": 300, "max_expiration": 2629746}},
        "contact_account": None, "rules": st.rules_json()}
