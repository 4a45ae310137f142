"""Tasks: one folder per task family, each a config schema plus small term functions."""
