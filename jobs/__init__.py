"""stockpulse jobs: local scheduling and the command line (``python -m jobs``)."""
