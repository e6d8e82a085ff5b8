"""Support for the documentation site (``mkdocs.yml``): build-time hooks, never imported by the
service itself."""
