"""QGIS glue: toolbar action, background task, result layers, Processing provider."""
