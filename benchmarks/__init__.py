"""Benchmarks of tidings against a bare loop, the book's bus and peer libraries."""
