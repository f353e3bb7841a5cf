"""The package version, on its own so provenance can record it without importing the package."""
__version__ = "0.1.0"
