"""Tests of studies/: the study definitions and their runs."""
