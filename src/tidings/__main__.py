"""`python -m tidings`: the `tidings` command line."""

from tidings.cli import main

main()
