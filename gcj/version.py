"""gcj's version (recorded in every config.json and report it writes)."""
__version__ = "0.5.0"
