"""The WeChat boundary: webhook, signatures and AES, dedup, routing, replies, API client, fakes."""
