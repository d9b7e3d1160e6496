"""The package version: a leaf module, so that any layer can record it without importing the
whole public API in cnnlab/__init__.py."""

__version__ = "0.1.0"
