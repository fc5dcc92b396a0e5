"""Benchmarks of speakerdb (README, "Performance"); each module runs as a script."""
