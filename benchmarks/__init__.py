"""Benchmarks of tidings against a bare loop, the seed's bus and peer libraries."""
