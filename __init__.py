"""Sentinel Densify QGIS plugin: Sentinel-2 at any date, with uncertainty and LAI."""


def classFactory(iface):  # noqa: N802 (QGIS API name)
    """QGIS entry point; imports the plugin lazily so QGIS starts fast."""
    from .plugin.main import DensifyPlugin

    return DensifyPlugin(iface)
