"""Pushes to school admins: binding their WeChat, composing notices and digests, deliveries."""
