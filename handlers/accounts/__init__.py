"""Accounts: the followers behind openids, a student's identity, and console sign-in."""
