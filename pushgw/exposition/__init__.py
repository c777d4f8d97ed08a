"""Exposition formats: parsing pushed bodies and rendering stored families."""
