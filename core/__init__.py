"""Sentinel Densify core: Sentinel-1/2 series to S2 at any date, uncertainty and LAI.

This package imports nothing from QGIS or Qt. Heavy dependencies (torch,
onnxruntime) are imported lazily inside the functions that need them.
"""

__version__ = "0.3.0"
