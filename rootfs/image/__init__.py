"""Reading finished images: OCI layouts, oci-archives and docker-archives,
and what `history` and `inspect` show of them."""
