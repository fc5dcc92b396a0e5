"""``python -m speakerdb`` runs the command line."""

from speakerdb.cli.main import main

main()
