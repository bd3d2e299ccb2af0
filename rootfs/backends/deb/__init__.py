"""The deb backend: apt repositories, resolver, two-stage installer."""
