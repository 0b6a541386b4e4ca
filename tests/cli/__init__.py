"""The commands as a user runs them: output, one-line errors, files written and read."""
