"""Lecture video as data in, files out: probing an upload, and transcoding it into an HLS ladder (PyAV)."""
