"""Child process for ``tests/slow/test_kill9.py``: an ingest that the test kills with SIGKILL.

    python -m tests.ingest_child HOME SOURCE BATCH FLUSH_S PAUSE_AT [WORKERS [ENGINE ADDRESS]]

Ingests SOURCE into the database at HOME, BATCH files per store transaction, saving the
indexes at most every FLUSH_S seconds (0: after every batch). Prints ``ready`` before opening
the database, ``batch <k>`` after each batch is written, ``done`` at the end. With PAUSE_AT > 0
it prints ``paused`` after batch PAUSE_AT and sleeps until it is killed, which makes that kill
point deterministic (after a batch, before the next). WORKERS: decoding processes (default,
or ``-``: the ingest's default, one per core). ENGINE: ``local`` or ``ray``, the latter on the
Ray cluster at ADDRESS.
"""

from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> int:
    home, source, batch, flush_s, pause_at = argv[0], argv[1], int(argv[2]), float(argv[3]), \
        int(argv[4])
    workers = int(argv[5]) if len(argv) > 5 and argv[5] != "-" else None
    engine = argv[6] if len(argv) > 6 else "local"
    address = argv[7] if len(argv) > 7 else None
    from speakerdb.api import SpeakerDB
    from speakerdb.config import IngestConfig

    done = 0

    def progress(_n_inputs: int) -> None:
        nonlocal done
        done += 1
        print(f"batch {done}", flush=True)
        if done == pause_at:
            print("paused", flush=True)
            while True:
                time.sleep(60)

    print("ready", flush=True)
    with SpeakerDB.open(home) as db:
        db.ingest([source], config=IngestConfig(files_per_batch=batch, index_flush_s=flush_s,
                                                workers=workers, engine=engine,
                                                ray_address=address),
                  progress=progress)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
