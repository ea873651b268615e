"""Root conftest: makes the repository importable for pytest runs from a plain checkout."""
