"""The web layer: H5 pages for students, consoles for staff and school admins."""
