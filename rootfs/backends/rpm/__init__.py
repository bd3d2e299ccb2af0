"""The rpm backend: rpm-md repositories, resolver, installer."""
