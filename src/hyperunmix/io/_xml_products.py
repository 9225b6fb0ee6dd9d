"""Sensor products stored as a GeoTIFF cube with an XML metadata file beside it (DLR's
EnMAP and DESIS L2A): telling them by their structure, reading their band table, and
turning their digital numbers into a reflectance scene.

A product is described by a :class:`Layout` (its own module, :mod:`~hyperunmix.io.enmap`
or :mod:`~hyperunmix.io.desis`, documents the layout and its sources). The parts that find
and parse files use the standard library only, so that recognising a product in
:func:`~hyperunmix.io.format_of` does not import rasterio; the pixels are read through the
GeoTIFF reader (:func:`hyperunmix.io.geotiff.read`), imported when a product is read.

Reading applies ``reflectance = DN * gain + offset`` with each band's gain and offset from
the XML. A band that holds the no-data value (the GeoTIFF's own, else the XML's) at every
pixel is a bad band and reads as 0: EnMAP fills the bands it does not deliver so. A pixel is
invalid when another of its bands holds the no-data value, when GDAL masks it, or when a
selected quality layer flags it.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FileFormatError, InputError
from ..scene import row_blocks
from ._common import CubeData, CubeHeader, library_errors

#: The spectral image of a product, ``<prefix>-SPECTRAL_IMAGE.TIF`` (EnMAP's analysis-ready
#: tiles add ``_COG``); the prefix names its other files.
_IMAGE_NAME = re.compile(r"^(?P<prefix>.+)-SPECTRAL_IMAGE(?:_COG)?\.tiff?$", re.IGNORECASE)


@dataclass(frozen=True)
class QualityLayer:
    """A quality raster beside the image and the flags in it that mark a pixel invalid.

    Attributes
    ----------
    name : str
        How the reader option ``quality=`` names it (``"cloud"``).
    file : str
        The file's tag, as in ``<prefix>-<file>.TIF`` (``"QL_QUALITY_CLOUD"``).
    bands : tuple of int, optional
        1-based bands of the file that hold the flag; all of them when None (a per-band
        mask flags a pixel defective in any band).
    bits : int, optional
        Bits whose being set flags a pixel; any non-zero value when None.
    background : int, optional
        A value that marks "no measurement" rather than a flag.
    """

    name: str
    file: str
    bands: tuple[int, ...] | None = None
    bits: int | None = None
    background: int | None = None

    def flags(self, values: np.ndarray) -> np.ndarray:
        """Boolean array, True where ``values`` (integers) carry the flag."""
        flagged = values != 0 if self.bits is None else (values & self.bits) != 0
        if self.background is not None:
            flagged &= values != self.background
        return flagged


@dataclass(frozen=True)
class Layout:
    """Where a GeoTIFF + XML product keeps what the reader needs.

    Attributes
    ----------
    sensor : str
        ``"EnMAP"``, ``"DESIS"``.
    name_pattern : str
        Regular expression the spectral image of a delivered product is named by: a file
        so named is taken for the product, so that a missing or broken XML is reported
        instead of the file read as a plain GeoTIFF (other names need the XML's structure).
    metadata_suffix : str
        ``<prefix>-<metadata_suffix>`` is the XML file (matched case-insensitively).
    root : str
        Tag of the XML's root element.
    bands : str
        Path (ElementTree syntax, from the root) of the per-band elements.
    band_number : str, optional
        The band's 1-based number: ``"@name"`` for an attribute, else a child element.
    centre, fwhm, gain, offset : str
        Child elements of a band element, values in nm (``centre``, ``fwhm``) and the
        factors of ``reflectance = DN * gain + offset``.
    level : str, optional
        Path of the element naming the processing level; without it, the level is taken
        from the image's name (``...-L2A-...``).
    background : str
        Path of the element holding the image's no-data value.
    quality : tuple of QualityLayer
    """

    sensor: str
    name_pattern: str
    metadata_suffix: str
    root: str
    bands: str
    band_number: str | None
    centre: str
    fwhm: str
    gain: str
    offset: str
    level: str | None
    background: str
    quality: tuple[QualityLayer, ...]


@dataclass
class BandTable:
    """What the XML says of the L bands, in file order.

    Attributes
    ----------
    wavelengths, fwhm, gains, offsets : (L,) float64
    nodata : float or None
        The XML's background (no-data) value.
    level : str or None
    """

    wavelengths: np.ndarray
    fwhm: np.ndarray
    gains: np.ndarray
    offsets: np.ndarray
    nodata: float | None
    level: str | None


# -- finding the files -------------------------------------------------------------------
def metadata_file(image: Path, layout: Layout) -> Path | None:
    """The XML file of the product whose spectral image is ``image``, if it is there."""
    match = _IMAGE_NAME.match(image.name)
    if match is None:
        return None
    wanted = f"{match['prefix']}-{layout.metadata_suffix}".lower()
    return _sibling(image, lambda name: name.lower() == wanted)


def quality_file(image: Path, layer: QualityLayer) -> Path | None:
    """The file of quality ``layer`` beside ``image`` (``_COG`` tiles included), if any."""
    match = _IMAGE_NAME.match(image.name)
    if match is None:
        return None
    pattern = re.compile(
        rf"^{re.escape(match['prefix'])}-{re.escape(layer.file)}(?:_COG)?\.tiff?$", re.IGNORECASE
    )
    return _sibling(image, lambda name: pattern.match(name) is not None)


#: A product's metadata file, ``<prefix>-METADATA.XML``.
_METADATA_NAME = re.compile(r"^(?P<prefix>.+)-METADATA\.xml$", re.IGNORECASE)


def spectral_image(path: Path) -> Path:
    """The spectral image of the product that ``path`` names by its metadata XML or its
    folder (users hold on to either, not only to the image), else ``path`` itself.

    A metadata XML without its image beside it, or a folder of several products, is a
    clear error rather than a file read in the wrong format."""
    if path.is_dir():
        images = [p for p in sorted(path.iterdir()) if p.is_file() and _IMAGE_NAME.match(p.name)]
        if len(images) > 1:
            names = ", ".join(image.name for image in images)
            raise InputError(f"{path} holds several spectral images ({names}): give one")
        return images[0] if images else path
    match = _METADATA_NAME.match(path.name)
    if match is None or not path.is_file():
        return path
    prefix = match["prefix"].lower()
    image = _sibling(
        path,
        lambda name: (
            (named := _IMAGE_NAME.match(name)) is not None and named["prefix"].lower() == prefix
        ),
    )
    if image is None:
        raise FileFormatError(
            f"{path} is a product's metadata, and its spectral image "
            f"{match['prefix']}-SPECTRAL_IMAGE.TIF is not beside it"
        )
    return image


def _sibling(path: Path, wanted) -> Path | None:
    try:
        return next(p for p in sorted(path.parent.iterdir()) if wanted(p.name) and p.is_file())
    except (StopIteration, OSError):
        return None


def is_product(path: Path, layout: Layout) -> bool:
    """Whether ``path`` is the spectral image of a ``layout`` product: named as the product
    names it (reading then reports what is wrong with its files, rather than taking it for a
    plain GeoTIFF), or, under any other name, with an XML beside it that has the layout's
    root element and band table. Never raises."""
    if not path.is_file():
        return False
    if re.match(layout.name_pattern, path.name, re.IGNORECASE):
        return True
    xml = metadata_file(path, layout)
    return xml is not None and _has_structure(xml, layout)


def _has_structure(xml: Path, layout: Layout) -> bool:
    """Whether ``xml`` has the layout's root element and a band element under it, parsed
    only as far as the first band element."""
    want = layout.bands.split("/")
    path: list[str] = []
    try:
        with open(xml, "rb") as stream:
            for event, element in ElementTree.iterparse(stream, events=("start", "end")):
                if event == "end":
                    path.pop()
                    continue
                if not path and element.tag != layout.root:
                    return False
                path.append(element.tag)
                if path[1:] == want:
                    return True
    except (ElementTree.ParseError, OSError):
        return False
    return False


# -- the band table ----------------------------------------------------------------------
def read_band_table(xml: Path, layout: Layout) -> BandTable:
    """The band table of ``xml``; a FileFormatError naming what is missing or wrong."""
    with library_errors(xml, f"read the {layout.sensor} metadata"):
        root = ElementTree.parse(xml).getroot()
    if root.tag != layout.root:
        raise FileFormatError(
            f"{xml} is no {layout.sensor} metadata file: its root element is <{root.tag}>, "
            f"not <{layout.root}>"
        )
    bands = root.findall(layout.bands)
    if not bands:
        raise FileFormatError(f"{xml} has no band table ({layout.root}/{layout.bands})")
    if layout.band_number is not None:
        numbers = [_number(band, layout.band_number, xml) for band in bands]
        if sorted(numbers) != list(range(1, len(bands) + 1)):
            raise FileFormatError(
                f"{xml} numbers its {len(bands)} bands {_span(numbers)}, not 1 to {len(bands)}"
            )
        bands = [band for _, band in sorted(zip(numbers, bands), key=lambda pair: pair[0])]
    columns = {
        tag: np.array([_value(band, tag, xml) for band in bands])
        for tag in (layout.centre, layout.fwhm, layout.gain, layout.offset)
    }
    level = None if layout.level is None else root.findtext(layout.level)
    background = root.findtext(layout.background)
    return BandTable(
        wavelengths=columns[layout.centre],
        fwhm=columns[layout.fwhm],
        gains=columns[layout.gain],
        offsets=columns[layout.offset],
        nodata=None if background is None else _float(background, layout.background, xml),
        level=None if level is None else level.strip(),
    )


def _number(band: ElementTree.Element, where: str, xml: Path) -> int:
    text = band.get(where[1:]) if where.startswith("@") else band.findtext(where)
    try:
        return int(str(text).strip())
    except ValueError:
        raise FileFormatError(f"{xml}: a band has no valid number ({where}: {text!r})") from None


def _value(band: ElementTree.Element, tag: str, xml: Path) -> float:
    text = band.findtext(tag)
    if text is None:
        raise FileFormatError(f"{xml}: a band element has no <{tag}>")
    return _float(text, tag, xml)


def _float(text: str, tag: str, xml: Path) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FileFormatError(f"{xml}: <{tag}> holds {text!r}, not a number") from None
    if not math.isfinite(value):
        raise FileFormatError(f"{xml}: <{tag}> holds {text!r}, not a finite number")
    return value


def _span(numbers: Sequence[int]) -> str:
    return f"{min(numbers)} to {max(numbers)}" if numbers else "nothing"


# -- reading -----------------------------------------------------------------------------
def _files(path: Path, layout: Layout) -> Path:
    """The XML of the product ``path`` is the image of, or a FileFormatError."""
    xml = metadata_file(path, layout)
    if xml is None:
        match = _IMAGE_NAME.match(path.name)
        beside = (
            f"{match['prefix']}-{layout.metadata_suffix}"
            if match
            else f"<prefix>-{layout.metadata_suffix} (the image named <prefix>-SPECTRAL_IMAGE.TIF)"
        )
        raise FileFormatError(
            f"{path} is a {layout.sensor} spectral image without its metadata: {beside} is "
            "not beside it, and the GeoTIFF alone has no wavelengths or scale to reflectance"
        )
    return xml


#: A processing level in a product's name, e.g. ``ENMAP01-____L2A-DT...``.
_LEVEL_IN_NAME = re.compile(r"(?<![A-Za-z0-9])(L[0-3][A-Da-d])(?![A-Za-z0-9])")


def _checked_table(path: Path, xml: Path, layout: Layout, n_bands: int) -> BandTable:
    table = read_band_table(xml, layout)
    if table.level is None:
        named = _LEVEL_IN_NAME.search(path.name)
        table.level = None if named is None else named[1].upper()
    if table.level is not None and "L2A" not in table.level.upper():
        raise FileFormatError(
            f"{path} is a {layout.sensor} {table.level} product; hyperunmix reads the L2A "
            "(surface reflectance) product"
        )
    if table.wavelengths.size != n_bands:
        raise FileFormatError(
            f"{xml.name} lists {table.wavelengths.size} bands, but {path.name} holds "
            f"{n_bands}: the metadata belongs to another image"
        )
    return table


def describe_product(path: Path, layout: Layout) -> CubeHeader:
    """Size, dtype and georeferencing from the GeoTIFF, band table from the XML."""
    from . import geotiff  # imports rasterio, which recognising a product does not need

    xml = _files(path, layout)
    gdal_nodata = _unscaled_nodata(path)
    header = geotiff.describe(path)
    table = _checked_table(path, xml, layout, header.shape[2])
    nodata = table.nodata if gdal_nodata is None else gdal_nodata
    present = [layer.name for layer in layout.quality if quality_file(path, layer)]
    header.wavelengths = table.wavelengths
    header.details = {
        "product": f"{layout.sensor} {table.level or 'L2A'} surface reflectance",
        "metadata": xml.name,
        "fwhm": f"{table.fwhm.min():.2f} - {table.fwhm.max():.2f} nm",
        "scale to reflectance": _scale_text(table),
        "no-data": "none given" if nodata is None else f"{nodata:g}",
        "quality layers": ", ".join(present) or "none beside the image",
    }
    return header


def _scale_text(table: BandTable) -> str:
    """``DN x gain + offset``, with the values when every band shares them."""
    if np.ptp(table.gains) == 0 and np.ptp(table.offsets) == 0:
        return f"DN x {table.gains[0]:g} + {table.offsets[0]:g}"
    return (
        f"DN x gain + offset by band (gains {table.gains.min():g} - {table.gains.max():g}, "
        f"offsets {table.offsets.min():g} - {table.offsets.max():g})"
    )


def read_product(path: Path, layout: Layout, quality: Any = None) -> CubeData:
    """The reflectance cube (H, W, L) float32 of a product and what its files say of it.

    ``quality`` selects the quality layers that mask pixels (see :func:`quality_names`).
    """
    from . import geotiff  # imports rasterio, which recognising a product does not need

    xml = _files(path, layout)
    selected = quality_names(quality, layout)
    gdal_nodata = _unscaled_nodata(path)
    data = geotiff.read(path)
    raw = data.cube
    table = _checked_table(path, xml, layout, raw.shape[2])
    nodata = table.nodata if gdal_nodata is None else gdal_nodata
    cube, bad, incomplete = _reflectance(raw, table, nodata)
    valid = ~incomplete if data.mask is None else data.mask & ~incomplete
    flagged_counts = {}
    for layer in layout.quality:
        if layer.name in selected:
            flagged = _quality_flags(path, layer, raw.shape[:2])
            if flagged is not None:
                flagged_counts[layer.name] = int(np.count_nonzero(flagged & valid))
                valid &= ~flagged
    metadata = {
        **data.metadata,
        "sensor": layout.sensor,
        "level": table.level or "L2A",
        "metadata_file": xml.name,
        "quality_masked": flagged_counts,
    }
    if nodata is not None:
        metadata["nodata"] = float(nodata)
    return CubeData(
        cube=cube,
        wavelengths=table.wavelengths,
        fwhm=table.fwhm,
        bad_bands=np.flatnonzero(bad),
        band_names=data.band_names,
        geo=data.geo,
        mask=valid,
        metadata=metadata,
    )


def _unscaled_nodata(path: Path) -> float | None:
    """The GeoTIFF's own no-data value (None for none, or NaN); a FileFormatError when it
    declares GDAL band scales or offsets: the GeoTIFF reader applies them, and the XML's
    gains on top would scale the cube twice."""
    from . import geotiff
    from ._raster import open_quietly, spectral_bands

    with library_errors(path, "read the raster"), open_quietly(path) as dataset:
        if geotiff.band_scaling(dataset, spectral_bands(dataset)) is not None:
            raise FileFormatError(
                f"{path} declares GDAL band scales or offsets besides the gains of its "
                "metadata file, so which scaling holds is unclear (a delivered product "
                "declares none)"
            )
        nodata = dataset.nodata
    return None if nodata is None or math.isnan(nodata) else float(nodata)


def quality_names(quality: Any, layout: Layout) -> set[str]:
    """The layer names ``quality`` selects: None (default) for every layer of the product,
    ``"none"`` or an empty list for none, else names as a list or comma-separated string."""
    known = [layer.name for layer in layout.quality]
    if quality is None:
        return set(known)
    if isinstance(quality, str):
        quality = [] if quality.strip().lower() == "none" else quality.split(",")
    if not isinstance(quality, Sequence) or not all(isinstance(q, str) for q in quality):
        raise InputError(f"quality= takes layer names, e.g. {','.join(known)}; got {quality!r}")
    names = {q.strip().lower() for q in quality if q.strip()}
    unknown = sorted(names - set(known))
    if unknown:
        raise InputError(
            f"{layout.sensor} has no quality layer {', '.join(unknown)}; its layers: "
            f"{', '.join(known)} (or none)"
        )
    return names


#: Values per block of rows that the reflectance and the quality flags are computed in.
_BLOCK_VALUES = 1 << 22


def _reflectance(
    raw: np.ndarray, table: BandTable, nodata: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``raw * gain + offset`` per band as float32, the (L,) bad-band flags (no-data at
    every pixel; those bands read 0) and the (H, W) pixels missing a good band.

    By blocks of rows, so that no full-size boolean array is held besides the cube.
    """
    n_rows, n_cols, n_bands = raw.shape
    gains = table.gains.astype(np.float32)
    offsets = table.offsets.astype(np.float32)
    cube = np.empty(raw.shape, dtype=np.float32)
    bad = np.full(n_bands, nodata is not None)
    missing = np.zeros((n_rows, n_cols), dtype=np.int32)
    for rows in row_blocks(n_rows, n_cols * n_bands, _BLOCK_VALUES):
        block = raw[rows]
        np.multiply(block, gains, out=cube[rows])
        cube[rows] += offsets
        if nodata is not None:
            absent = block == nodata
            bad &= absent.all(axis=(0, 1))
            missing[rows] = absent.sum(axis=2)
    cube[:, :, bad] = 0.0
    # A bad band misses every pixel; a pixel missing more than those misses a good band.
    return cube, bad, missing > np.count_nonzero(bad)


def _quality_flags(path: Path, layer: QualityLayer, shape: tuple[int, int]) -> np.ndarray | None:
    """(H, W) bool, True where ``layer`` (when beside ``path``) flags a pixel."""
    from rasterio.windows import Window

    from ._raster import open_quietly

    source = quality_file(path, layer)
    if source is None:
        return None
    with library_errors(source, "read the quality layer"), open_quietly(source) as dataset:
        if (dataset.height, dataset.width) != shape:
            raise FileFormatError(
                f"{source.name} is {dataset.height} x {dataset.width} px, but the image "
                f"{path.name} is {shape[0]} x {shape[1]}: it is another product's"
            )
        bands = layer.bands or tuple(range(1, dataset.count + 1))
        if max(bands) > dataset.count:
            raise FileFormatError(
                f"{source.name} has {dataset.count} bands; the {layer.name} flags are in "
                f"band {max(bands)}"
            )
        if not np.issubdtype(np.dtype(dataset.dtypes[0]), np.integer):
            raise FileFormatError(f"{source.name} holds {dataset.dtypes[0]} values, not flags")
        flagged = np.zeros(shape, dtype=bool)
        for rows in row_blocks(shape[0], shape[1] * len(bands), _BLOCK_VALUES):
            window = Window(0, rows.start, shape[1], rows.stop - rows.start)
            flagged[rows] = layer.flags(dataset.read(list(bands), window=window)).any(axis=0)
    return flagged
