"""Who spoke when: speech regions cut into short overlapping windows, the windows embedded with
the database's model and clustered, each cluster identified against the database like a query,
windows merged into turns (``run.diarize``); RTTM files (``turns``)."""
