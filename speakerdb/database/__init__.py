"""One speaker database as a whole: its home, opening, processes, speaker management and typed results."""
