"""DVC stage entry points: `python -m stages.<name>`; each is a thin main() over the library."""
