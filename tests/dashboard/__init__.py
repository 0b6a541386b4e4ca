"""Tests of nas.dashboard: records, figures and the page, with and without a browser."""
