# Generated from src/tidings/sagas/_async/__init__.py by tools/unasync.py: edit that file, then run `make unasync`.
