"""hso's version (the ground floor: importing it imports nothing else of hso; pyproject.toml carries the same)."""
__version__ = "0.1.0"
