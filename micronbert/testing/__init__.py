"""Fixtures for the tests: small fake datasets in each supported on-disk layout. Never imported by the
runtime package (the layering test keeps it at the top)."""
