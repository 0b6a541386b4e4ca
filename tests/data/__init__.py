"""Tests of nas.data: the synthetic set, archives, image folders, splits and the data cache."""
