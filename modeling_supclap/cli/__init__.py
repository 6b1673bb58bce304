"""Command-line entry points (``train_supclap.py``, ``eval_supclap.py``, console scripts)."""
