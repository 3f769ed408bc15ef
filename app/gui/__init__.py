"""The PySide6 desktop UI. The only package allowed to import Qt (checked by tests/check_boundaries.py)."""
