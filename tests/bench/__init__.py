"""Tests of the C{bench} package: the command line, the report and each benchmark at a tiny scale."""
