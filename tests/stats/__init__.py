"""Tests of nas.stats: rank correlations, the recommendation and design-space statistics."""
