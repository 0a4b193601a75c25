"""The Densify dialog, built in code: project rasters, target date, model, device, output, LAI.

Everything the run needs is collected here, on the main thread, into a DensifyRequest; the
background task (plugin/task.py) sees only that request.
"""

from __future__ import annotations

import copy
import datetime as dt
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qgis.core import QgsCoordinateReferenceSystem, QgsProject, QgsRasterLayer, QgsRectangle, QgsSettings
from qgis.gui import QgsExtentGroupBox, QgsFileWidget
from qgis.PyQt.QtCore import QDate, QRect, QSize, Qt, QTimer, pyqtSignal
from qgis.PyQt.QtGui import QBrush, QColor, QGuiApplication, QShowEvent
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

# the core modules that need numpy and rasterio, imported with this module (scipy checked below): a Python without
# one of them fails here, where the plugin reports it, not in a Qt slot later
from ..core import dates, inventory
from ..core.engine import build_inventory, series_requests
from ..core.errors import InputError
from ..core.inventory import describe, file_version
from ..core.methods import available, bundled_model, default_model, model_file_problem
from ..core.model_contract import gpu_present
from ..core.reader import any_clear, read_clear_fraction
from ..core.request import DensifyRequest
from ..plugin.layers import extent_values, source_path, temporal_date

if importlib.util.find_spec("scipy") is None:  # imported lazily, but every method's run needs it (the baselines'
    raise ModuleNotFoundError("No module named 'scipy'", name="scipy")  # calibration, the haze screen): say so now

SENSORS = [("S2", "S2"), ("S1", "S1"), ("Mask", "MASK"), ("?", "")]
COL_USE, COL_NAME, COL_SENSOR, COL_DATE, COL_SOURCE = range(5)
MODEL_FILE = "__file__"
CLEAR_ENOUGH = 0.5  # an S2 acquisition counts as clear when at least half its pixels are
MISSING = QBrush(QColor("#ffd6d6"))
SETTINGS = "sentinel_densify/dialog/"  # QgsSettings keys of the choices a run leaves for the next QGIS session
SIZE = QSize(900, 720)  # the dialog's size where the screen has room for it
FRAME = QSize(16, 40)  # room kept for the window frame and title bar while they are not known (before the first show)


@dataclass
class Row:
    """One project raster as shown in the table."""

    layer_id: str
    name: str
    path: str
    sensor: str  # S2 | S1 | MASK | "" (unknown)
    when: dt.datetime | None
    date_source: str  # layer temporal properties | metadata or file name | missing
    problems: list[str]


def describe_layer(layer: QgsRasterLayer) -> Row:
    """Sensor and date of a project raster: QGIS temporal properties first, then the core's parsing."""
    path = source_path(layer)
    info = describe(path)
    when, source = temporal_date(layer), "layer temporal properties"
    if when is None:
        when, source = info.when, "metadata or file name"
    if when is None:
        source = "missing: type YYYY-MM-DD"
    problems = [p for p in info.problems if not p.startswith(("no acquisition date", "unknown sensor"))]
    if info.band_file:  # one band of an acquisition: the core combines the ticked band files of each date
        problems = [p for p in problems if not p.startswith("holds one Sentinel-2 band")]
    if info.polarization:  # VV or VH of an acquisition: the core combines the ticked pair of each date
        problems = [p for p in problems if not p.startswith("holds one polarization")]
    if info.output_kind:  # an earlier result in the project: never an observation
        problems.insert(0, f"a Densify output ({info.output_kind}), not an acquisition")
    return Row(layer.id(), layer.name(), path, info.sensor or ("S2" if info.band_file else ""), when, source, problems)


def onnx_providers() -> tuple[list[str], str]:
    """The execution providers ONNX Runtime offers here, and a line for the dialog."""
    try:
        import onnxruntime
    except ImportError:
        return [], "ONNX Runtime is not installed: the baselines run on CPU (numpy); no .onnx models."
    providers = list(onnxruntime.get_available_providers())
    text = f"ONNX Runtime {onnxruntime.__version__} offers: {', '.join(providers)}"
    if "CUDAExecutionProvider" in providers and not gpu_present():  # the test open_session makes
        text += " (no CUDA driver found: GPU runs fall back to CPU)"
    return providers, text


def default_output_dir(project: QgsProject) -> str:
    """A folder next to the saved project, else a temporary folder."""
    if project.fileName() and project.absolutePath():
        return str(Path(project.absolutePath()) / "densify_outputs")
    return temporary_output_dir()


def temporary_output_dir() -> str:
    return str(Path(tempfile.gettempdir()) / f"sentinel_densify_{os.getpid()}")


def available_geometry(widget: QWidget) -> QRect:
    """The part of the screen `widget` is on that windows may use (without taskbar, dock or menu bar; in
    device-independent pixels), else the primary screen's; empty without a screen."""
    screen = widget.screen() or QGuiApplication.primaryScreen()
    return screen.availableGeometry() if screen is not None else QRect()


class DensifyDialog(QDialog):
    """Pick inputs and parameters; Run starts a background task and the dialog may close."""

    task_created = pyqtSignal(object)  # the DensifyTask, emitted just before it is queued

    def __init__(self, parent: QWidget | None = None, project: QgsProject | None = None, message_bar=None,
                 canvas=None):
        super().__init__(parent)
        self.project = project or QgsProject.instance()
        self.message_bar = message_bar
        self.canvas = canvas  # the map canvas: its extent, or one drawn on it, as the area to compute
        self.rows: list[Row] = []
        self.problems: list[str] = []
        self.mode = ""
        self._s2_images = 0  # S2 acquisitions the last check found (band files make one per date)
        self._s1_images = 0  # S1 acquisitions the last check found (a VV and a VH file make one)
        self._area = ""  # the output size the last check found, with an extent
        self.task = None
        self._clear: dict[tuple, float] = {}  # clear fraction per S2 file, mask and grid
        self._described: dict[tuple, object] = {}  # describe() per file, its modification time and options
        self.setWindowTitle("Sentinel Densify")
        self.resize(SIZE)
        self._timer = QTimer(self, singleShot=True, interval=300)
        self._timer.timeout.connect(self.validate)
        self._layers_timer = QTimer(self, singleShot=True, interval=200)  # the project's layers changed
        self._layers_timer.timeout.connect(self._follow_project)
        self._build()
        self._restore_choices()
        self.refresh_layers()
        self._watched = (self.project.layersAdded, self.project.layersRemoved, self.project.cleared)
        for signal in self._watched:
            signal.connect(self._project_changed)
        self.fit_to_screen()

    def fit_to_screen(self, on: QWidget | None = None) -> None:
        """Shrink the dialog (its frame and title bar included) to the available part of the screen `on` is on
        (default: QGIS's window's, the dialog's own before it is first shown); the main area scrolls when its
        contents need more, the buttons stay visible."""
        area = available_geometry(on or self.parentWidget() or self)
        if area.isEmpty():
            return
        frame = self.frameGeometry().size() - self.size()  # known once shown; before, FRAME is kept
        room = area.size() - QSize(max(frame.width(), FRAME.width()), max(frame.height(), FRAME.height()))
        self.resize(self.size().boundedTo(room))

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt API name)
        """Fit the screen it is shown on (where the user last moved it, or QGIS's window's if that moved)."""
        super().showEvent(event)
        self.fit_to_screen(self)

    def detach(self) -> None:
        """Stop following the project (the plugin unloads)."""
        for signal in self._watched:
            signal.disconnect(self._project_changed)
        self._watched = ()

    def _project_changed(self, *_args) -> None:
        """Layers added or removed, or the project cleared (another one opened): the open dialog lists the
        project's layers again (a hidden one does when it is shown; selection() never uses a removed layer)."""
        if self.isVisible():
            self._layers_timer.start()

    def _follow_project(self) -> None:
        if self.isVisible():
            self.refresh_layers()

    # building ---------------------------------------------------------------------------------
    def _build(self) -> None:
        outer = QVBoxLayout(self)
        main = QWidget()  # all but the buttons: scrolls where the screen is too small for it
        layout = QVBoxLayout(main)
        layout.setContentsMargins(0, 0, 0, 0)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.NoFrame)
        self.scroll.setWidget(main)
        outer.addWidget(self.scroll, 1)
        inputs = QGroupBox("Project rasters")
        box = QVBoxLayout(inputs)
        hint = QLabel("Tick the rasters to use. Set the sensor or the date (YYYY-MM-DD [HH:MM], UTC) "
                      "where it was not detected.")
        hint.setWordWrap(True)
        box.addWidget(hint)
        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["Use", "Layer", "Sensor", "Acquisition date (UTC)", "File"])
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        header = self.table.horizontalHeader()
        fit, stretch = QHeaderView.ResizeToContents, QHeaderView.Stretch
        for col, mode in ((COL_USE, fit), (COL_NAME, stretch), (COL_SENSOR, fit), (COL_DATE, fit),
                          (COL_SOURCE, stretch)):
            header.setSectionResizeMode(col, mode)
        self.table.itemChanged.connect(self.schedule_validation)
        # takes the room there is, at least a few rows: its height asks for no more (the main area scrolls only
        # when the screen is too small for that)
        self.table.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Ignored)
        self.table.setMinimumHeight(header.sizeHint().height() + 4 * self.table.verticalHeader().defaultSectionSize())
        box.addWidget(self.table, 1)  # the spare height: its rows, not the hint above it
        buttons = QHBoxLayout()
        self.refresh_button = QPushButton("Reload project layers")
        self.refresh_button.clicked.connect(self.refresh_layers)
        self.counts_label = QLabel()
        buttons.addWidget(self.counts_label, 1)
        buttons.addWidget(self.refresh_button)
        box.addLayout(buttons)
        layout.addWidget(inputs, 1)

        # an area to compute: the S2 pixels it touches (unticked: the whole S2 grid)
        self.extent_box = QgsExtentGroupBox()
        self.extent_box.setTitleBase("Limit to an extent")
        self.extent_box.setToolTip("Compute only the S2 pixels this extent touches (in any CRS); unticked: the "
                                   "whole grid of the earliest S2 image")
        self.extent_box.setCheckable(True)
        self.extent_box.setChecked(False)
        self.extent_box.setCollapsed(True)  # opens when ticked: the table keeps its room
        self.extent_box.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Maximum)
        self.extent_box.setOutputCrs(self.project.crs())  # the S2 grid is offered as the original after a check
        if self.canvas is not None:
            self.extent_box.setCurrentExtent(self.canvas.extent(), self.canvas.mapSettings().destinationCrs())
            self.extent_box.setMapCanvas(self.canvas)
        self.extent_box.extentChanged.connect(self.schedule_validation)
        self.extent_box.toggled.connect(lambda on: (self.extent_box.setCollapsed(not on), self.schedule_validation()))
        layout.addWidget(self.extent_box)

        form = QFormLayout()
        date_row = QHBoxLayout()
        self.date_edit = QDateEdit(calendarPopup=True)
        self.date_edit.setDisplayFormat("yyyy-MM-dd")
        self.date_edit.dateChanged.connect(self.schedule_validation)
        self._default_date: QDate | None = None  # the last date chosen for the user, not by them
        self.mode_label = QLabel()
        self.mode_label.setWordWrap(True)
        date_row.addWidget(self.date_edit)
        # a series: every N days from the target date to a last date, in one run (the inputs read once)
        self.series_check = QCheckBox("series to")
        self.series_check.setToolTip("Synthesize every N days from the target date to this date, in one run; "
                                     "one result group per date")
        self.until_edit = QDateEdit(calendarPopup=True)
        self.until_edit.setDisplayFormat("yyyy-MM-dd")
        self.every_spin = QSpinBox()
        self.every_spin.setRange(1, 366)
        self.every_spin.setValue(10)
        self.every_spin.setPrefix("every ")
        self.every_spin.setSuffix(" days")
        for widget in (self.until_edit, self.every_spin):
            widget.setEnabled(False)
        self.series_check.toggled.connect(self._series_toggled)
        self.until_edit.dateChanged.connect(self.schedule_validation)
        self.every_spin.valueChanged.connect(self.schedule_validation)
        for widget in (self.series_check, self.until_edit, self.every_spin):
            date_row.addWidget(widget)
        date_row.addWidget(self.mode_label, 1)
        form.addRow("Target date", date_row)

        model_row = QHBoxLayout()
        self.model_combo = QComboBox()
        self.model_file = QgsFileWidget()
        self.model_file.setStorageMode(QgsFileWidget.GetFile)
        self.model_file.setFilter("ONNX models (*.onnx)")
        self.model_file.fileChanged.connect(self.schedule_validation)
        self.model_combo.currentIndexChanged.connect(self._model_changed)
        model_row.addWidget(self.model_combo)
        model_row.addWidget(self.model_file, 1)
        form.addRow("Model", model_row)
        self._fill_models()

        device_row = QHBoxLayout()
        self.device_combo = QComboBox()
        for label, value in (("Auto", "auto"), ("CPU", "cpu"), ("GPU (CUDA)", "cuda")):
            self.device_combo.addItem(label, value)
        self.providers, text = onnx_providers()
        self.device_label = QLabel(text)
        self.device_label.setWordWrap(True)
        device_row.addWidget(self.device_combo)
        device_row.addWidget(self.device_label, 1)
        form.addRow("Device", device_row)

        self.out_dir = QgsFileWidget()
        self.out_dir.setStorageMode(QgsFileWidget.GetDirectory)
        self._default_out = default_output_dir(self.project)
        self.out_dir.setFilePath(self._default_out)
        self.out_dir.fileChanged.connect(self.schedule_validation)
        form.addRow("Output folder", self.out_dir)

        self.lai_check = QCheckBox("Also produce LAI and its std (ESA SNAP network)")
        self.lai_check.setChecked(True)
        form.addRow("", self.lai_check)
        layout.addLayout(form)

        self.problems_label = QLabel()
        self.problems_label.setWordWrap(True)
        self.problems_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.problems_label)

        self.buttons = QDialogButtonBox(QDialogButtonBox.Close)
        self.run_button = self.buttons.addButton("Run", QDialogButtonBox.AcceptRole)
        self.run_button.clicked.connect(self.run)
        self.buttons.rejected.connect(self.reject)
        outer.addWidget(self.buttons)

    def _restore_choices(self) -> None:
        """The model, device, LAI, series step and output folder of the last run, in this or an earlier QGIS
        session (what no longer exists, or is no longer offered, stays at its default)."""
        settings = QgsSettings()
        model_file = settings.value(SETTINGS + "model_file", "", type=str)
        model = settings.value(SETTINGS + "model", "default", type=str)
        if model != MODEL_FILE or Path(model_file).is_file():
            self.model_combo.setCurrentIndex(max(0, self.model_combo.findData(model)))
            self.model_file.setFilePath(model_file)
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(settings.value(SETTINGS + "device",
                                                                                           "auto", type=str))))
        self.lai_check.setChecked(settings.value(SETTINGS + "lai", True, type=bool))
        self.every_spin.setValue(settings.value(SETTINGS + "every_days", self.every_spin.value(), type=int))
        out_dir = settings.value(SETTINGS + "out_dir", "", type=str)
        if out_dir and Path(out_dir).is_dir():  # a folder the user chose; the default follows the project
            self.out_dir.setFilePath(out_dir)

    def _remember_choices(self) -> None:
        """Keep this run's choices for the next time the dialog opens (restored by _restore_choices)."""
        settings = QgsSettings()
        settings.setValue(SETTINGS + "model", self.model_combo.currentData())
        settings.setValue(SETTINGS + "model_file", self.model_file.filePath().strip())
        settings.setValue(SETTINGS + "device", self.device_combo.currentData())
        settings.setValue(SETTINGS + "lai", self.lai_check.isChecked())
        settings.setValue(SETTINGS + "every_days", self.every_spin.value())
        out_dir = self.output_folder()
        settings.setValue(SETTINGS + "out_dir", "" if out_dir == self._default_out else out_dir)

    def output_folder(self) -> str:
        """The output folder as typed, with ~ taken as the home folder."""
        return os.path.expanduser(self.out_dir.filePath().strip())

    def _fill_models(self) -> None:
        model = default_model()
        if model is not None:
            label = f"Bundled default ({model.name})"
        elif bundled_model() is not None:
            label = "Bundled default (needs onnxruntime: linear baseline until installed)"
        else:
            label = "Bundled default (no model shipped: linear baseline)"
        self.model_combo.addItem(label, "default")
        for name in available():
            if name != "onnx":
                self.model_combo.addItem(f"Baseline: {name}", name)
        self.model_combo.addItem("Model file (.onnx)...", MODEL_FILE)
        self._model_changed()

    def _model_changed(self) -> None:
        self.model_file.setEnabled(self.model_combo.currentData() == MODEL_FILE)
        self.schedule_validation()

    # the table --------------------------------------------------------------------------------
    def refresh_layers(self) -> None:
        """Fill the table with the project's raster layers, keeping what the user set for layers
        already listed (tick, sensor, date) and their target date; follow the project's default
        output folder unless the user chose one (the project may have been saved or switched)."""
        kept = self._row_choices()
        default = default_output_dir(self.project)
        if self.output_folder() in ("", self._default_out):
            self.out_dir.setFilePath(default)
        self._default_out = default
        layers = [lyr for lyr in self.project.mapLayers().values() if isinstance(lyr, QgsRasterLayer)]
        rank = {"S2": 0, "MASK": 1, "S1": 2, "": 3}
        rows = [describe_layer(lyr) for lyr in layers]
        self.rows = sorted(rows, key=lambda r: (rank[r.sensor], r.when is None, r.when or 0, r.name))
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.rows))
        for r, row in enumerate(self.rows):
            detected = (bool(row.sensor and not row.problems), row.sensor,
                        f"{row.when:%Y-%m-%d %H:%M}" if row.when else "")
            checked, sensor, text = kept.get(row.layer_id, detected)  # what the user set, else detected
            use = QTableWidgetItem()
            use.setFlags(Qt.ItemIsUserCheckable | Qt.ItemIsEnabled)
            use.setCheckState(Qt.Checked if checked else Qt.Unchecked)
            self.table.setItem(r, COL_USE, use)
            name = QTableWidgetItem(row.name)
            name.setFlags(Qt.ItemIsEnabled | Qt.ItemIsSelectable)
            name.setData(Qt.UserRole, row.layer_id)
            if row.problems:
                name.setToolTip("; ".join(row.problems))
                name.setForeground(QBrush(QColor("#b00020")))
            self.table.setItem(r, COL_NAME, name)
            combo = QComboBox()
            for label, value in SENSORS:
                combo.addItem(label, value)
            combo.setCurrentIndex([v for _, v in SENSORS].index(sensor))
            combo.setToolTip("detected" if row.sensor else "not detected: choose the sensor")
            combo.currentIndexChanged.connect(self.schedule_validation)
            self.table.setCellWidget(r, COL_SENSOR, combo)
            when = QTableWidgetItem(text)
            when.setToolTip(f"from {row.date_source}")
            if row.when is None:
                when.setBackground(MISSING)
            self.table.setItem(r, COL_DATE, when)
            source = QTableWidgetItem(row.path)
            source.setFlags(Qt.ItemIsEnabled | Qt.ItemIsSelectable)
            self.table.setItem(r, COL_SOURCE, source)
        self.table.blockSignals(False)
        if self._default_date is None or self.date_edit.date() == self._default_date:
            self._default_target_date()
        self.validate()

    def _row_choices(self) -> dict[str, tuple[bool, str, str]]:
        """Layer id -> (ticked, sensor, date text) of the rows now in the table."""
        return {row.layer_id: (self.table.item(r, COL_USE).checkState() == Qt.Checked,
                               self.table.cellWidget(r, COL_SENSOR).currentData(),
                               self.table.item(r, COL_DATE).text())
                for r, row in enumerate(self.rows)}

    def _default_target_date(self) -> None:
        """Midway through the S2 series, so a first run is gap-filling."""
        s2 = [row.when for row in self.rows if row.sensor == "S2" and row.when]
        if s2:
            mid = min(s2) + (max(s2) - min(s2)) / 2
            self._default_date = QDate(mid.year, mid.month, mid.day)
        else:
            self._default_date = QDate.currentDate()
        self.date_edit.setDate(self._default_date)

    def set_included(self, row: int, included: bool) -> None:
        self.table.item(row, COL_USE).setCheckState(Qt.Checked if included else Qt.Unchecked)

    def set_sensor(self, row: int, sensor: str) -> None:
        combo = self.table.cellWidget(row, COL_SENSOR)
        combo.setCurrentIndex([v for _, v in SENSORS].index(sensor))

    def set_date(self, row: int, text: str) -> None:
        self.table.item(row, COL_DATE).setText(text)

    def selection(self) -> tuple[dict[str, list[str]], dict[str, dt.datetime], list[str]]:
        """Ticked rows by sensor, their dates, and the problems of the selection itself."""
        groups: dict[str, list[str]] = {"S2": [], "S1": [], "MASK": []}
        when: dict[str, dt.datetime] = {}
        problems: list[str] = []
        for r, row in enumerate(self.rows):
            if self.table.item(r, COL_USE).checkState() != Qt.Checked:
                continue
            if self.project.mapLayer(row.layer_id) is None:  # removed from the project since the table was filled
                continue
            sensor = self.table.cellWidget(r, COL_SENSOR).currentData()
            text = self.table.item(r, COL_DATE).text().strip()
            parsed = dates.parse_datetime(text) if text else None
            if not sensor:
                problems.append(f"{row.name}: sensor unknown (choose S2, S1 or Mask, or untick it)")
                continue
            if parsed is None:
                why = f"'{text}' is not a date (YYYY-MM-DD)" if text else "missing (type YYYY-MM-DD)"
                problems.append(f"{row.name}: acquisition date {why}")
                continue
            groups[sensor].append(row.path)
            when[row.path] = parsed
        if not groups["S2"]:
            problems.insert(0, "No Sentinel-2 layer selected: tick at least one S2 raster.")
        return groups, when, problems

    # request and validation -------------------------------------------------------------------
    def target_date(self) -> dt.date:
        return self.date_edit.date().toPyDate()

    def target_dates(self) -> list[dt.date]:
        """The target date, or with "series to" every N days from it to the last date (none when the last
        date is before it)."""
        first = self.target_date()
        if not self.series_check.isChecked():
            return [first]
        return dates.every(first, self.until_edit.date().toPyDate(), self.every_spin.value())

    def _series_toggled(self, on: bool) -> None:
        for widget in (self.until_edit, self.every_spin):
            widget.setEnabled(on)
        if on and self.until_edit.date() <= self.date_edit.date():
            self.until_edit.setDate(self.date_edit.date().addDays(60))
        self.schedule_validation()

    def build_requests(self) -> list[DensifyRequest]:
        """One request per target date (a series: every N days), the inputs and settings shared."""
        return series_requests(self.build_request(), self.target_dates())

    def method(self) -> str:
        value = self.model_combo.currentData()
        return os.path.expanduser(self.model_file.filePath().strip()) if value == MODEL_FILE else value

    def build_request(self) -> DensifyRequest:
        groups, when, _ = self.selection()
        sensors = {p: s for s, paths in groups.items() for p in paths}
        extent, crs = self.extent()
        return DensifyRequest(s2=groups["S2"], s1=groups["S1"], masks=groups["MASK"],
                              target_date=self.target_date(), out_dir=self.output_folder(),
                              method=self.method(), device=self.device_combo.currentData(),
                              lai=self.lai_check.isChecked(), dates=when, sensors=sensors, extent=extent,
                              extent_crs=crs)

    def extent(self) -> tuple[tuple[float, float, float, float] | None, str | None]:
        """The ticked extent as (xmin, ymin, xmax, ymax) and its CRS (EPSG:n, else WKT; None: the S2
        grid's), or (None, None)."""
        if not self.extent_box.isChecked():
            return None, None
        return extent_values(self.extent_box.outputExtent(), self.extent_box.outputCrs())

    def schedule_validation(self, *_args) -> None:
        self._timer.start()

    def validate(self) -> list[str]:
        """Check the inputs without running; show the problems, the mode and nearest clear S2 dates."""
        self._timer.stop()
        groups, _when, problems = self.selection()
        method = self.method()
        if self.model_combo.currentData() == MODEL_FILE:
            if not method:
                problems.append("Choose a model file (.onnx).")
            elif problem := model_file_problem(method):  # the core's words (a folder, a checkpoint, no file)
                problems.append(f"Model file {problem}.")
        if not self.target_dates():
            problems.append("The last date of the series is before the target date.")
        if self.extent_box.isChecked() and self.extent()[0] is None:
            problems.append("Choose the extent (or untick it to compute the whole S2 grid).")
        folder = self.output_folder()
        if not folder:
            problems.append("Choose an output folder.")
        elif not os.path.isabs(folder):
            problems.append(f"Output folder {folder}: give a full path (a relative one would be taken from "
                            f"QGIS's working folder, {os.getcwd()}).")
        elif why := self.build_request().output_folder_problem():
            problems.append(f"Output folder {folder}: {why}.")
        mode_text = ""
        if not problems:
            try:
                mode_text = self._check_core(self.build_request())
            except InputError as exc:
                problems += [str(p) for p in exc.problems]
            except Exception as exc:  # noqa: BLE001 (a message in the dialog, never a traceback)
                problems.append(f"Cannot check the inputs: {type(exc).__name__}: {exc}")
        self.problems = problems
        self.mode_label.setText(mode_text)
        if problems:
            lines = "<br>".join(_html(p) for p in problems)
            self.problems_label.setText(f"<b>Cannot run yet:</b><br>{lines}")
            self.problems_label.setStyleSheet("color: #b00020;")
        else:
            ready = (f"Ready: {len(groups['S2'])} S2, {len(groups['S1'])} S1, "
                     f"{len(groups['MASK'])} mask rasters.")
            for sensor, images, together in (("S2", self._s2_images, "band files"),
                                             ("S1", self._s1_images, "VV and VH files")):
                files = len(set(groups[sensor]))
                if files != len(groups[sensor]):  # a layer added twice: its file is read once
                    ready += f" {len(groups[sensor]) - files} {sensor} layers repeat another's file (read once)."
                if images != files:  # band files: several files make one acquisition
                    ready += f" The {sensor} layers are {images} acquisitions ({together} read together)."
            if self._area:
                ready += f" {self._area}."
            if self.output_folder() == temporary_output_dir():
                ready += (" The outputs go to a temporary folder (the project is not saved): choose an "
                          "output folder to keep them.")
            self.problems_label.setText(ready)
            self.problems_label.setStyleSheet("color: #1b5e20;")
        self.counts_label.setText(f"{len(self.rows)} raster layers in the project")
        self.run_button.setEnabled(not problems)
        return problems

    def _check_core(self, request: DensifyRequest) -> str:
        """The core's checks (files, dates, overlap, clear pixels, target range); returns the mode line."""
        inv = build_inventory(request, check_clear=False, describer=self._describe)
        self._s2_images, self._s1_images = len(inv.s2), len(inv.s1)
        self._area = ""
        if inv.s2_grid is not None:
            self._area = (f"The extent is {inv.grid.width} x {inv.grid.height} px of the {inv.s2_grid.width} x "
                          f"{inv.s2_grid.height} px S2 grid")
        self._s2_extent(inv.s2_grid or inv.grid)
        inventory.check_some_clear(inv, self._clear_fraction, self._any_clear)  # the core's check, from the cache
        series = self.target_dates()  # the first is request.target_date
        each = [inventory.check_target(inv, d)[0] for d in series]  # each date in range
        self.mode, modes = each[0], list(dict.fromkeys(each))
        target = dates.to_days(request.target_date)
        before = [s for s in reversed(inv.s2) if dates.to_days(s.when) <= target]
        after = [s for s in inv.s2 if dates.to_days(s.when) > target]
        parts = []
        for label, candidates in (("before", before), ("after", after)):
            for s in candidates[:12]:  # nearest first; the series is read at 32 px for this
                clear = self._clear_fraction(inv, s, 32)
                if clear >= CLEAR_ENOUGH:
                    days = dates.to_days(s.when) - target
                    parts.append(f"{label}: {s.when:%Y-%m-%d} ({days:+.0f} d, {clear:.0%} clear)")
                    break
            else:
                parts.append(f"{label}: none" + (" near" if candidates else ""))
        if len(series) > 1:
            return (f"<b>{len(series)} dates</b>, {series[0]:%Y-%m-%d} to {series[-1]:%Y-%m-%d} "
                    f"({', '.join(modes)}); from the first, nearest clear S2 {', '.join(parts)}")
        return f"<b>{self.mode}</b>; nearest clear S2 {', '.join(parts)}"

    def _s2_extent(self, grid) -> None:
        """Offer the S2 grid as the extent box's "original" extent (a start to edit)."""
        crs = QgsCoordinateReferenceSystem()
        crs.createFromWkt(grid.crs_wkt)
        left, bottom, right, top = grid.bounds
        rect = QgsRectangle(left, bottom, right, top)
        if rect != self.extent_box.originalExtent() or crs != self.extent_box.originalCrs():
            self.extent_box.setOriginalExtent(rect, crs)

    def _describe(self, path, sensor=None, when=None, band_order=None):
        """inventory.describe, opened once per file and modification time: validation runs on every
        edit (a copy each time, since the inventory amends what it gets)."""
        key = (str(path), file_version(str(path)), sensor, when, tuple(band_order or ()))
        if key not in self._described:
            self._described[key] = describe(path, sensor=sensor, when=when, band_order=band_order)
        return copy.deepcopy(self._described[key])

    def _clear_fraction(self, inv, s, max_size: int) -> float:
        """`reader.read_clear_fraction`, read once per file, mask, grid and size: validation runs on every edit."""
        return self._cached(inv, s, max_size, lambda: read_clear_fraction(inv, s, max_size=max_size))

    def _any_clear(self, inv, s) -> bool:
        """`reader.any_clear`, searched once per file, mask and grid."""
        return self._cached(inv, s, "any", lambda: any_clear(inv, s))

    def _cached(self, inv, s, what, read):
        mask = inv.masks.get(s.path)
        key = (s.path, mask.path if mask else None, file_version(mask.path) if mask else None, inv.grid,
               file_version(s.path), what)
        if key not in self._clear:
            self._clear[key] = read()
        return self._clear[key]

    # running ----------------------------------------------------------------------------------
    def run(self):
        """Validate, then start the background task; returns it (None when the inputs have problems)."""
        if self.validate():
            return None
        from ..plugin.task import create, launch, queued_outputs, title

        requests = self.build_requests()
        for request in requests:  # never replace an earlier result, nor the outputs of a run still queued or running
            request.output_paths = request.unused_output_paths(queued_outputs())
        self._remember_choices()
        self.task = create(requests, self.project, self.message_bar)
        self.task_created.emit(self.task)  # before it runs: listeners may connect to its signals
        launch(self.task)
        if self.message_bar is not None:
            when = title(requests).removeprefix("Densify ")  # 2018-06-01, or 2018-06-01 to ... (N dates)
            self.message_bar.pushInfo("Densify", f"Running for {when} (progress and cancel in the task bar)")
        self.accept()
        return self.task


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
