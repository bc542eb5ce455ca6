"""The course catalog: catalog files, their problems, and loading them as course versions."""
