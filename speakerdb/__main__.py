"""``python -m speakerdb`` runs the command line."""

from speakerdb.cli import main

main()
