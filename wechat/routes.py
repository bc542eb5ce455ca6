"""The routing table: which flow answers which message type, event and menu key."""
from __future__ import annotations

from handlers import accounts, certificates, guide, inbox, pushes
from wechat.router import Router


def build_router(public_url: str = "http://127.0.0.1:5000") -> Router:
    router = Router()
    router.on_event("subscribe", accounts.subscribe)
    router.on_event("unsubscribe", accounts.unsubscribe)
    router.on_event("TEMPLATESENDJOBFINISH", pushes.template_finished)
    router.on_message("text", inbox.receive_text)
    for media in inbox.MEDIA_LABELS:
        router.on_message(media, inbox.receive_media)
    router.on_click("ABOUT", guide.about)
    router.on_click("GUIDE", guide.guide)
    router.on_click("FAQ", guide.faq)
    router.on_click("CONTACT_STAFF", guide.contact_staff)
    for key in guide.H5_ENTRIES:
        router.on_click(key, guide.h5_entry(public_url, key))
    router.on_click("MY_CERTIFICATE", certificates.my_certificate_entry(public_url))
    return router
