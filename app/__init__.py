"""Continuo, the studio: all of the Qt code lives in this package."""
