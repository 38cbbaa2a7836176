"""Board modules: one per target, each defining `Board` (see boards/README.md)."""
