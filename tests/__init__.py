"""The test suite: one sub-folder a package of the code, cross-cutting suites at the top."""
