"""Tests of nas.search: the design space, studies, workers, storage, confirmation, faults."""
