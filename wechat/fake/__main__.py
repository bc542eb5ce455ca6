"""Command line: run the fake WeChat server standalone for development."""
from __future__ import annotations

import argparse
import logging
import os

from config import DEV_SECRETS
from wechat.fake.server import FakeWeChatServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wechat.fake",
                                     description="Run the fake WeChat API on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8701)
    parser.add_argument("--app-id", default=os.environ.get("WECHAT_APP_ID") or DEV_SECRETS["WECHAT_APP_ID"])
    parser.add_argument("--app-secret", default=None,
                        help="defaults to $WECHAT_APP_SECRET, then the dev secret in config.py")
    parser.add_argument("--token-ttl", type=int, default=7200)
    args = parser.parse_args(argv)
    # Read from the environment here rather than as an argparse default so --help never shows it.
    secret = args.app_secret or os.environ.get("WECHAT_APP_SECRET") or DEV_SECRETS["WECHAT_APP_SECRET"]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    FakeWeChatServer(args.app_id, secret, token_ttl=args.token_ttl, host=args.host,
                     port=args.port).serve_forever()


if __name__ == "__main__":
    main()
