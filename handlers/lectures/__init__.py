"""Lectures: staff upload a topic's video (resumable), a job probes and transcodes it, the ladder is published."""
