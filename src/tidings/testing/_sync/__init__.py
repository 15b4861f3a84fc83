# Generated from src/tidings/testing/_async/__init__.py by tools/unasync.py: edit that file, then run `make unasync`.
