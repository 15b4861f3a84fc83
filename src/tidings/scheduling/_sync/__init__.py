# Generated from src/tidings/scheduling/_async/__init__.py by tools/unasync.py: edit that file, then run `make unasync`.
