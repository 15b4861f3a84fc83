"""The console's pages, one module per part: the log, projections, dead letters, the live tail."""
