"""Bridges to other libraries, each behind its extra: `sqlalchemy` (`tidings[sqlalchemy]`)
and `fastapi` (`tidings[web]`).
"""
