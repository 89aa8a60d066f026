"""tagwarden: server-side Git hooks that enforce a tag-based deployment model."""

__version__ = "0.1.0"
