"""`micronbert demo`: the whole pipeline on built-in data in one command (pipeline), and its
self-contained HTML report (report)."""
