"""Continuo's studio: the song document, the piano roll and the main window. All the Qt code lives here."""
