"""The pipeline: recipe -> lock -> package files -> root -> artifacts, and
publishing the result atomically. Each command runs a prefix or a suffix."""
