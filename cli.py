"""Run the speakerdb command line from a checkout: ``python cli.py --help``."""

from speakerdb.cli.main import main

if __name__ == "__main__":
    main()
