"""The bundled sample week (package data of the distribution, read with importlib.resources)."""
