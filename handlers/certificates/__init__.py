"""Certificates: claims, verification, corrections, exports and the staff desk."""
