"""A toy service for tests/test_adding_a_service.py: a package with a descriptor, settings and a
feature class, and nothing else (no app factory, no ``__main__``, no entry in any table)."""
