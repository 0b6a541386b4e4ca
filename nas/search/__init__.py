"""Optuna searches: the space, the study and its storage, trials, workers, confirmation."""
