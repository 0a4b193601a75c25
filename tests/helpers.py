"""Helpers the test modules share (importable: pytest puts tests/ on the path, see pyproject.toml)."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import numpy as np
import rasterio


def craft(src: Path, dst: Path, data=None, tags: dict | None = None, drop_tags=(), descriptions=None,
          **profile) -> Path:
    """Write dst from a real raster: same profile, tags and band descriptions unless overridden
    (never touches src)."""
    with rasterio.open(src) as ds:
        prof, arr, descs = ds.profile, ds.read(), list(ds.descriptions)
        old = {k: v for k, v in ds.tags().items() if k not in drop_tags}
    arr = arr if data is None else np.asarray(data)
    prof.update(count=arr.shape[0], dtype=str(arr.dtype), **profile)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(dst, "w", **prof) as out:
        out.write(arr)
        out.update_tags(**{**old, **(tags or {})})
        for i, d in enumerate(descs if descriptions is None else descriptions, 1):
            if i <= arr.shape[0]:
                out.set_band_description(i, d or "")
    return dst


def blocks_read(monkeypatch, path: Path, tile: int) -> list[tuple[int, int]]:
    """A list that fills with the (row, column) of the tile x tile blocks of `path` each read of it covers, as
    rasterio reads it (the real read, recorded); `monkeypatch.undo()` stops recording."""
    read: list[tuple[int, int]] = []
    plain = rasterio.io.DatasetReader.read

    def spy(ds, *args, window=None, **kwargs):
        if ds.name == str(path):
            w = window or rasterio.windows.Window(0, 0, ds.width, ds.height)
            read.extend((r, c) for r in range(int(w.row_off) // tile, (int(w.row_off + w.height) - 1) // tile + 1)
                        for c in range(int(w.col_off) // tile, (int(w.col_off + w.width) - 1) // tile + 1))
        return plain(ds, *args, window=window, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    return read


def read_array(path) -> np.ndarray:
    """All bands of a raster."""
    with rasterio.open(path) as ds:
        return ds.read()


ESA_10M = ("B02", "B03", "B04", "B08")
ESA_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


def _write_mtd_tl(path: Path, tags: dict[str, str], crs, t, size: int) -> None:
    """A granule's MTD_TL.xml as ESA writes it: its geocoding (CRS, size and corner per resolution, which
    GDAL's SENTINEL2 driver reads) and mean angles: the source's sun angles, and per band (13) view angles
    spread symmetrically around the source's, so their mean is the source's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    geo = "".join(f'<Size resolution="{r}"><NROWS>{-(-size * 10 // r)}</NROWS><NCOLS>{-(-size * 10 // r)}</NCOLS>'
                  "</Size>" for r in (10, 20, 60))
    geo += "".join(f'<Geoposition resolution="{r}"><ULX>{t.c:.0f}</ULX><ULY>{t.f:.0f}</ULY><XDIM>{r}</XDIM>'
                   f"<YDIM>-{r}</YDIM></Geoposition>" for r in (10, 20, 60))

    def pair(zenith: float, azimuth: float) -> str:
        return (f'<ZENITH_ANGLE unit="deg">{zenith:.4f}</ZENITH_ANGLE>'
                f'<AZIMUTH_ANGLE unit="deg">{azimuth % 360:.4f}</AZIMUTH_ANGLE>')

    vz, va = float(tags["MEAN_VIEW_ZENITH_ANGLE"]), float(tags["MEAN_VIEW_AZIMUTH_ANGLE"])
    spread = [(b - 6) * 0.25 for b in range(13)]
    view = "".join(f'<Mean_Viewing_Incidence_Angle bandId="{b}">{pair(vz + d, va + 20 * d)}'
                   "</Mean_Viewing_Incidence_Angle>" for b, d in enumerate(spread))
    sun = pair(float(tags["MEAN_SUN_ZENITH_ANGLE"]), float(tags["MEAN_SUN_AZIMUTH_ANGLE"]))
    path.write_text('<?xml version="1.0"?><n1:Level-2A_Tile_ID xmlns:n1="https://psd-14.sentinel2.eo.esa.int/'
                    'PSD/S2_PDI_Level-2A_Tile_Metadata.xsd"><n1:Geometric_Info><Tile_Geocoding>'
                    f"<HORIZONTAL_CS_CODE>EPSG:{crs.to_epsg()}</HORIZONTAL_CS_CODE>{geo}</Tile_Geocoding><Tile_Angles>"
                    f"<Mean_Sun_Angle>{sun}</Mean_Sun_Angle><Mean_Viewing_Incidence_Angle_List>{view}"
                    "</Mean_Viewing_Incidence_Angle_List></Tile_Angles></n1:Geometric_Info></n1:Level-2A_Tile_ID>")


def write_mtd(product: Path, offset: int = -1000) -> None:
    """A product's MTD_MSIL2A.xml as ESA writes its parts this project and GDAL's SENTINEL2 driver read:
    the scaling (quantification value, BOA_ADD_OFFSET per band) and the list of its image files (so that
    GDAL opens the product as subdatasets SENTINEL2_L2A:<this file>:10m:EPSG_..., as QGIS lists them)."""
    granule = next((product / "GRANULE").iterdir())
    files = "".join(f"<IMAGE_FILE>{p.relative_to(product).with_suffix('').as_posix()}</IMAGE_FILE>"
                    for p in sorted((granule / "IMG_DATA").rglob("*_*m.*")))
    offsets = "".join(f'<BOA_ADD_OFFSET band_id="{i}">{offset}</BOA_ADD_OFFSET>' for i in range(13))
    stamp = dt.datetime.strptime(granule.name.rsplit("_", 1)[1], "%Y%m%dT%H%M%S")
    (product / "MTD_MSIL2A.xml").write_text(
        '<?xml version="1.0"?><n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/'
        'User_Product_Level-2A.xsd"><n1:General_Info><Product_Info>'
        f"<PRODUCT_START_TIME>{stamp:%Y-%m-%dT%H:%M:%S}.024Z</PRODUCT_START_TIME><PROCESSING_LEVEL>Level-2A</PROCESSING_LEVEL>"
        '<Query_Options completeSingleTile="true"><PRODUCT_FORMAT>SAFE_COMPACT</PRODUCT_FORMAT></Query_Options>'
        f'<Product_Organisation><Granule_List><Granule granuleIdentifier="{granule.name}" imageFormat="JPEG2000">'
        f"{files}</Granule></Granule_List></Product_Organisation></Product_Info><Product_Image_Characteristics>"
        '<QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>'
        f"</QUANTIFICATION_VALUES_LIST><BOA_ADD_OFFSET_VALUES_LIST>{offsets}</BOA_ADD_OFFSET_VALUES_LIST>"
        "</Product_Image_Characteristics></n1:General_Info></n1:Level-2A_User_Product>")


def zip_product(product: Path, archive: Path) -> Path:
    """`product` zipped as the Copernicus Data Space serves it: the .SAFE folder at the archive's root."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(product.rglob("*")):
            z.write(f, f.relative_to(product.parent).as_posix())
    return archive


def make_safe(src: Path, scl: Path, root: Path, dn_offset: int = 0, name: str | None = None,
              driver: str = "JP2OpenJPEG", extras: bool = True) -> Path:
    """A real 31UDS acquisition laid out as ESA ships it (a .SAFE folder of one-band JP2 files per
    resolution, R10m / R20m / R60m, with its SCL at 20 and 60 m). The 10-band file's 20 m bands are
    20 m pixels repeated (nearest x2), so taking every other pixel gives ESA's 20 m file exactly; the
    60 m files take every 6th 10 m pixel; the granule's MTD_TL.xml has the image's angles. `dn_offset` is
    added to valid DN (processing baseline 04.00 adds 1000). `extras`: also the files a .SAFE holds that
    are not inputs (AOT, WVP, TCI, QI_DATA)."""
    stamp = src.name.split("_")[1]
    safe = root / (name or f"S2B_MSIL2A_{stamp}_N0400_R051_T31UDS_{stamp}.SAFE")
    img = safe / "GRANULE" / f"L2A_T31UDS_A005000_{stamp}" / "IMG_DATA"
    ext = ".jp2" if driver == "JP2OpenJPEG" else ".tif"
    options = {"QUALITY": "100", "REVERSIBLE": "YES"} if driver == "JP2OpenJPEG" else {}

    def write(a: np.ndarray, crs, t, res: int, step: int, stem: str, folder: Path | None = None) -> None:
        sub = a[::step, ::step]
        out = (folder or img / f"R{res}m") / f"{stem}_{res}m{ext}"
        out.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(out, "w", driver=driver, width=sub.shape[1], height=sub.shape[0], count=1,
                           dtype=a.dtype, crs=crs, transform=rasterio.Affine(t.a * step, 0, t.c, 0, t.e * step, t.f),
                           **options) as ds:
            ds.write(sub, 1)

    with rasterio.open(src) as ds:
        data, crs, t, tags = ds.read(), ds.crs, ds.transform, ds.tags()
    _write_mtd_tl(img.parent / "MTD_TL.xml", tags, crs, t, data.shape[-1])
    for band, a in zip(ESA_BANDS, data, strict=True):
        a = np.where(a > 0, a + dn_offset, 0).astype("uint16")
        for res in ((10, 20, 60) if band in ESA_10M else (20, 60)):
            write(a, crs, t, res, res // 10, f"T31UDS_{stamp}_{band}")
    with rasterio.open(scl) as ds:
        s, st = ds.read(1), ds.transform
    for res in (20, 60):
        write(s, crs, st, res, res // 20, f"T31UDS_{stamp}_SCL")
    if extras:
        write(np.full_like(data[0], 7), crs, t, 10, 1, f"T31UDS_{stamp}_AOT")
        write(np.full_like(data[0], 900), crs, t, 20, 2, f"T31UDS_{stamp}_WVP")
        write(np.full_like(s, 90), crs, st, 20, 1, "MSK_CLDPRB", folder=img.parent / "QI_DATA")
    return safe


def _s1_linear(src: Path) -> tuple[np.ndarray, dict]:
    """A real S1 file's VV, VH as linear power (0 where it has no data) and its profile."""
    with rasterio.open(src) as ds:
        db, profile = ds.read(), ds.profile
    lin = np.power(10.0, db.astype("float64") / 10.0)
    return np.where(np.isfinite(lin), lin, 0.0).astype("float32"), profile


def s1_stamp(src: Path) -> str:
    """The acquisition time of a real 31UDS S1 file (S1_IW_GRDH_ASC_<YYYYMMDDTHHMMSS>_VV_VH_dB.tif)."""
    return src.name.split("_")[4]


def make_asf(src: Path, root: Path, scale: str = "p", backscatter: str = "g", aux: bool = True) -> Path:
    """A real S1 acquisition laid out as ASF HyP3 ships an RTC product: a folder of one GeoTIFF per
    polarization (..._VV.tif, ..._VH.tif; power, dB or amplitude as `scale` p / d / a says, gamma0 or
    sigma0 as `backscatter` g / s says, 0 where no data) and, with `aux`, its maps (layover-shadow,
    incidence angle, DEM) and README."""
    name = f"S1A_IW_{s1_stamp(src)}_DVP_RTC20_G_{backscatter}{scale}uned_1A2B"
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    lin, profile = _s1_linear(src)
    values = {"p": lin, "d": np.where(lin > 0, 10.0 * np.log10(np.where(lin > 0, lin, 1.0)), 0.0),
              "a": np.sqrt(lin)}[scale].astype("float32")
    profile.update(count=1, nodata=0.0, dtype="float32")
    for k, pol in enumerate(("VV", "VH")):
        with rasterio.open(folder / f"{name}_{pol}.tif", "w", **profile) as ds:
            ds.write(values[k], 1)
    if aux:
        for suffix, dtype in (("ls_map", "uint8"), ("inc_map", "float32"), ("dem", "float32")):
            with rasterio.open(folder / f"{name}_{suffix}.tif", "w", **{**profile, "dtype": dtype}) as ds:
                ds.write(np.ones(lin.shape[1:], dtype), 1)
        (folder / f"{name}.README.md.txt").write_text("ASF Radiometric Terrain Corrected product\n")
    return folder


def make_beam_dimap(src: Path, root: Path, name: str | None = None) -> Path:
    """A real S1 acquisition as SNAP writes a calibrated, terrain-corrected product in BEAM-DIMAP: <name>.dim
    (its start time as SNAP formats it) and <name>.data/ holding Sigma0_VV.img and Sigma0_VH.img (ENVI,
    big-endian float32 linear power, 0 for no data) with their .hdr, a tie-point grid and vector data.
    Returns the .data folder."""
    stamp = s1_stamp(src)
    when = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%S")
    name = name or f"S1B_IW_GRDH_1SDV_{stamp}_{stamp}_012345_017A2B_C3D4_Orb_Cal_TC"
    data = root / f"{name}.data"
    (data / "tie_point_grids").mkdir(parents=True, exist_ok=True)
    (data / "vector_data").mkdir(exist_ok=True)
    (data / "vector_data" / "pins.csv").write_text("org.esa.snap.Pin\n")
    lin, profile = _s1_linear(src)
    t, crs = profile["transform"], profile["crs"]

    def envi(path: Path, band: str, a: np.ndarray) -> None:
        a.astype(">f4").tofile(path.with_suffix(".img"))
        path.with_suffix(".hdr").write_text(
            "ENVI\ndescription = {Sentinel Application Platform (SNAP) image data file - Unit: intensity}\n"
            f"samples = {a.shape[1]}\nlines = {a.shape[0]}\nbands = 1\nheader offset = 0\n"
            "file type = ENVI Standard\ndata type = 4\ninterleave = bsq\nbyte order = 1\n"
            f"band names = {{ {band} }}\n"
            f"map info = {{UTM Zone, 1.0, 1.0, {t.c}, {t.f}, {t.a}, {-t.e}, 31, North, WGS-84, units=Meters}}\n"
            f"coordinate system string = {{{crs.to_wkt()}}}\n"
            "data gain values = {1.0}\ndata offset values = {0.0}\n")

    envi(data / "Sigma0_VV", "Sigma0_VV", lin[0])
    envi(data / "Sigma0_VH", "Sigma0_VH", lin[1])
    envi(data / "tie_point_grids" / "latitude", "latitude", np.full(lin.shape[1:], 50.8, "float32"))
    start = when.strftime("%d-%b-%Y %H:%M:%S").upper() + ".335463"
    (root / f"{name}.dim").write_text(
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n<Dimap_Document name="' + name + '.dim">'
        f"<Dataset_Id><DATASET_NAME>{name}</DATASET_NAME></Dataset_Id>"
        f"<Production><PRODUCT_TYPE>GRD</PRODUCT_TYPE><PRODUCT_SCENE_RASTER_START_TIME>{start}"
        "</PRODUCT_SCENE_RASTER_START_TIME></Production>"
        '<Dataset_Sources><MDElem name="metadata"><MDElem name="Abstracted_Metadata">'
        f'<MDATTR name="first_line_time" type="ascii">{start}</MDATTR></MDElem></MDElem></Dataset_Sources>'
        "</Dimap_Document>\n")
    return data
