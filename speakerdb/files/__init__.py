"""File primitives: atomic writes, content hashes, verified downloads."""
