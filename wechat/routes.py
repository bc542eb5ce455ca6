"""The routing table: which flow answers which message type, event and menu key."""
from __future__ import annotations

from handlers import guide
from handlers.accounts import followers
from handlers.certificates import claims
from handlers.inbox import student
from handlers.pushes import deliveries
from wechat.router import Router


def build_router(public_url: str = "http://127.0.0.1:5000") -> Router:
    router = Router()
    router.on_event("subscribe", followers.subscribe)
    router.on_event("unsubscribe", followers.unsubscribe)
    router.on_event("TEMPLATESENDJOBFINISH", deliveries.template_finished)
    router.on_message("text", student.receive_text)
    for media in student.MEDIA_LABELS:
        router.on_message(media, student.receive_media)
    router.on_click("ABOUT", guide.about)
    router.on_click("GUIDE", guide.guide)
    router.on_click("FAQ", guide.faq(public_url))
    router.on_click("CONTACT_STAFF", guide.contact_staff)
    for key in guide.H5_ENTRIES:
        router.on_click(key, guide.h5_entry(public_url, key))
    router.on_click("MY_CERTIFICATE", claims.my_certificate_entry(public_url))
    return router
