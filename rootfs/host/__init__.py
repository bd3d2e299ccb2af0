"""The host boundary: everything that touches the machine rootfs runs on
with a target root in hand. Safe path resolution, the one unpacker that
keeps payloads inside the root, atomic writes, advisory locks, mount
namespaces, chroots and user namespaces."""
