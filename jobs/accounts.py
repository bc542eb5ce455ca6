"""Account jobs: syncing a follower's WeChat profile after they follow."""
from __future__ import annotations

from typing import Any

from handlers.accounts import followers
from jobs.context import JobContext, JobRegistry


def _sync_subscriber(ctx: JobContext, payload: dict[str, Any]) -> None:
    # The API call comes before any write, so no lock is held while WeChat answers.
    info = ctx.services["wechat_client"]().user.get(payload["openid"])
    followers.apply_user_info(ctx.session, payload["openid"], info, now=ctx.now())


def register(registry: JobRegistry) -> None:
    registry.register(followers.SYNC_SUBSCRIBER, _sync_subscriber)
