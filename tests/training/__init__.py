"""Tests of nas.training: the trial trainer, how trials run (plans) and its CUDA path."""
