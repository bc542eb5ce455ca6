"""Rendering a reply value as the passive-reply XML WeChat expects."""
from __future__ import annotations

import time

from handlers.messages import ImageReply, Inbound, NewsReply, Reply, TextReply


def _cdata(value: str) -> str:
    # "]]>" inside a value would close the section early; split it across two sections.
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def render(reply: Reply, inbound: Inbound, now: float | None = None) -> str:
    """The reply XML, addressed back to the sender of `inbound`."""
    created = int(now if now is not None else time.time())
    head = (
        f"<ToUserName>{_cdata(inbound.openid)}</ToUserName>"
        f"<FromUserName>{_cdata(inbound.account)}</FromUserName>"
        f"<CreateTime>{created}</CreateTime>"
    )
    if isinstance(reply, TextReply):
        body = f"<MsgType><![CDATA[text]]></MsgType><Content>{_cdata(reply.content)}</Content>"
    elif isinstance(reply, NewsReply):
        body = (
            "<MsgType><![CDATA[news]]></MsgType><ArticleCount>1</ArticleCount><Articles><item>"
            f"<Title>{_cdata(reply.title)}</Title>"
            f"<Description>{_cdata(reply.description)}</Description>"
            f"<PicUrl>{_cdata(reply.image_url)}</PicUrl>"
            f"<Url>{_cdata(reply.url)}</Url>"
            "</item></Articles>"
        )
    elif isinstance(reply, ImageReply):
        body = f"<MsgType><![CDATA[image]]></MsgType><Image><MediaId>{_cdata(reply.media_id)}</MediaId></Image>"
    else:
        raise TypeError(f"not a reply value: {reply!r}")
    return f"<xml>{head}{body}</xml>"


def seal(encrypted: str, signature: str, timestamp: str, nonce: str) -> str:
    """The safe-mode envelope around an encrypted reply."""
    return (
        f"<xml><Encrypt>{_cdata(encrypted)}</Encrypt>"
        f"<MsgSignature>{_cdata(signature)}</MsgSignature>"
        f"<TimeStamp>{timestamp}</TimeStamp><Nonce>{_cdata(nonce)}</Nonce></xml>"
    )
