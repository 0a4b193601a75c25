"""The example model shipped in plugin/models: densify:synthesize, then densify:estimate_lai on its output.

`build_model()` builds it with the QgsProcessingModelAlgorithm API; the .model3 file is its saved
form (regenerate with `QT_HASH_SEED=0 QT_QPA_PLATFORM=offscreen python -m
sentinel_densify.plugin.processing.example_model` in a Python that sees QGIS: it starts a headless
QGIS and registers the provider; the fixed hash seed keeps Qt's XML attribute order, so the file
changes only where the model does).
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterDateTime,
    QgsProcessingParameterMultipleLayers,
)
from qgis.PyQt.QtCore import QPointF

MODEL_FILE = Path(__file__).resolve().parent.parent / "models" / "densify_lai_chain.model3"
NAME = "densify_lai_chain"


def _output(name: str, child_id: str, child_output: str) -> QgsProcessingModelOutput:
    out = QgsProcessingModelOutput(name)
    out.setChildId(child_id)
    out.setChildOutputName(child_output)
    return out


def build_model() -> QgsProcessingModelAlgorithm:
    """Inputs s2_layers, s1_layers, mask_layers, target_date; outputs the synthesized S2, its
    uncertainty and the LAI estimated from the synthesized image."""
    model = QgsProcessingModelAlgorithm(NAME, "Sentinel Densify")
    model.setHelpContent({"ALG_DESC": "Synthesizes Sentinel-2 at a target date (densify:synthesize), "
                          "then estimates LAI, its std (propagated from the synthesized image's "
                          "uncertainty) and flags from the synthesized image (densify:estimate_lai).",
                          "ALG_CREATOR": "Sentinel Densify"})
    raster = QgsProcessing.TypeRaster
    inputs = [
        QgsProcessingParameterMultipleLayers("s2_layers", "Sentinel-2 rasters", raster),
        QgsProcessingParameterMultipleLayers("s1_layers", "Sentinel-1 rasters", raster, optional=True),
        QgsProcessingParameterMultipleLayers("mask_layers", "Cloud masks (SCL)", raster, optional=True),
        QgsProcessingParameterDateTime("target_date", "Target date", QgsProcessingParameterDateTime.Date),
    ]
    for i, definition in enumerate(inputs):
        component = QgsProcessingModelParameter(definition.name())
        component.setPosition(QPointF(120, 60 + 70 * i))
        model.addModelParameter(definition, component)

    synth = QgsProcessingModelChildAlgorithm("densify:synthesize")
    synth.setChildId("synthesize")
    synth.setDescription("Synthesize Sentinel-2 at a date")
    synth.setPosition(QPointF(420, 160))
    source = QgsProcessingModelChildParameterSource
    for param, model_param in (("S2_LAYERS", "s2_layers"), ("S1_LAYERS", "s1_layers"),
                               ("MASK_LAYERS", "mask_layers"), ("TARGET_DATE", "target_date")):
        synth.addParameterSources(param, [source.fromModelParameter(model_param)])
    synth.addParameterSources("METHOD", [source.fromStaticValue(0)])
    synth.addParameterSources("MODEL", [source.fromStaticValue("")])
    synth.addParameterSources("DEVICE", [source.fromStaticValue(0)])
    synth.setModelOutputs({
        "Synthesized S2": _output("Synthesized S2", "synthesize", "OUTPUT_SYNTHESIZED"),
        "Uncertainty": _output("Uncertainty", "synthesize", "OUTPUT_UNCERTAINTY"),
    })
    model.addChildAlgorithm(synth)

    lai = QgsProcessingModelChildAlgorithm("densify:estimate_lai")
    lai.setChildId("estimate_lai")
    lai.setDescription("Estimate LAI (SNAP network)")
    lai.setPosition(QPointF(720, 260))
    lai.addParameterSources("INPUT", [source.fromChildOutput("synthesize", "OUTPUT_SYNTHESIZED")])
    lai.addParameterSources("UNCERTAINTY", [source.fromChildOutput("synthesize", "OUTPUT_UNCERTAINTY")])
    lai.setModelOutputs({"LAI": _output("LAI", "estimate_lai", "OUTPUT")})
    model.addChildAlgorithm(lai)
    model.updateDestinationParameters()
    return model


def _write_model_file() -> None:
    """Save build_model() to MODEL_FILE in a headless QGIS with the densify provider registered
    (without it the model's destinations, which come from the algorithms, are not saved)."""
    import os
    import sys

    from qgis.core import QgsApplication

    from .provider import DensifyProvider

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    sys.path.append(os.environ.get("QGIS_PLUGINPATH_SYSTEM", "/usr/share/qgis/python/plugins"))
    from processing.core.Processing import Processing

    Processing.initialize()
    provider = DensifyProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    if not build_model().toFile(str(MODEL_FILE)):
        raise SystemExit(f"could not write {MODEL_FILE}")
    print(MODEL_FILE)


if __name__ == "__main__":
    _write_model_file()
