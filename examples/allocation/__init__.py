"""The allocation service of "Architecture Patterns with Python", built on tidings.

`domain` holds the Product aggregate, `messages` its commands and events,
`handlers` the service layer, `unit_of_work` the repository seam, `bootstrap`
the composition root; `python -m examples.allocation` runs a short scenario.
"""
