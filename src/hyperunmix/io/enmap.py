"""EnMAP L2A (surface reflectance) products of DLR's ground segment, read from their
spectral image with the metadata XML and quality layers beside it.

>>> scene = hu.open("ENMAP01-____L2A-DT0000001867_...-SPECTRAL_IMAGE.TIF")  # doctest: +SKIP
>>> scene = hu.open(path, quality="cloud,cloudshadow")   # only these layers mask  # doctest: +SKIP

The layout followed
-------------------
A product is a folder of files named ``<product>-<part>``, ``<product>`` being e.g.
``ENMAP01-____L2A-DT0000001867_20220724T104526Z_008_V010302_20230628T165614Z``:

``SPECTRAL_IMAGE.TIF`` (``SPECTRAL_IMAGE_COG.TIF`` for analysis-ready tiles)
    The cube, one GeoTIFF band per spectral band in wavelength order (VNIR and SWIR
    together), integer digital numbers, in its map projection (CRS and transform).
``METADATA.XML``, root ``<level_X>``
    ``base/level``: ``L2A``. ``specific/bandCharacterisation/bandID`` (attribute
    ``number``, 1-based), one per band, with ``wavelengthCenterOfBand`` and
    ``FWHMOfBand`` (nm) and ``GainOfBand`` and ``OffsetOfBand``:
    ``reflectance = DN * GainOfBand + OffsetOfBand`` (L2A: 1e-4 and 0).
    ``specific/backgroundValue``: the no-data value (used when the GeoTIFF declares none;
    -32768 in L2A). Bands the product does not deliver are filled with it: they become bad
    bands.
``QL_QUALITY_CLOUD.TIF`` (``_CLOUDSHADOW``, ``_HAZE``, ``_SNOW``)
    One band, value 1 where the pixel is cloud (cloud shadow, haze, snow).
``QL_QUALITY_CIRRUS.TIF``
    Two bits: 1 thin, 2 medium, 3 thick cirrus; any of them masks the pixel.
``QL_PIXELMASK.TIF``
    One band per spectral band, 1 where that band's pixel is defective (255: background);
    a pixel defective in any band is masked.

The quality layers present mask pixels (reader option ``quality=``: the names ``cloud``,
``cloudshadow``, ``cirrus``, ``haze``, ``snow``, ``pixelmask``, or ``none``);
``QL_QUALITY_CLASSES`` (land / water) and ``QL_QUALITY_TESTFLAGS`` flag no invalid pixel
and are not read.

Sources: the XML element paths as EnMAP-Box reads them
(github.com/EnMAP-Box/enmap-box, ``enmapboxprocessing/algorithm/importenmapl2aalgorithm.py``);
the root element, ``base/level``, ``specific/backgroundValue`` (and L2A's -32768) and the
flag coding of every quality layer as ESA SNAP's EnMAP reader reads them (optical toolbox,
``eu.esa.opt.dataio.enmap``: ``EnmapMetadata``, ``EnmapL2AMetadataImpl``,
``QualityLayerInfo``); the file list from EnPT's documentation (GFZ, "EnMAP Level 1B data
reader"). The EnMAP product specification itself (DLR, EN-PCV-ICD-2009-2) was not at hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._common import CubeData, CubeHeader
from ._xml_products import Layout, QualityLayer, describe_product, is_product, read_product

LAYOUT = Layout(
    sensor="EnMAP",
    name_pattern=r"^ENMAP0\d-.*L2A.*-SPECTRAL_IMAGE(?:_COG)?\.tiff?$",
    metadata_suffix="METADATA.XML",
    root="level_X",
    bands="specific/bandCharacterisation/bandID",
    band_number="@number",
    centre="wavelengthCenterOfBand",
    fwhm="FWHMOfBand",
    gain="GainOfBand",
    offset="OffsetOfBand",
    level="base/level",
    background="specific/backgroundValue",
    quality=(
        QualityLayer("cloud", "QL_QUALITY_CLOUD", bits=0b1),
        QualityLayer("cloudshadow", "QL_QUALITY_CLOUDSHADOW", bits=0b1),
        QualityLayer("cirrus", "QL_QUALITY_CIRRUS", bits=0b11),
        QualityLayer("haze", "QL_QUALITY_HAZE", bits=0b1),
        QualityLayer("snow", "QL_QUALITY_SNOW", bits=0b1),
        QualityLayer("pixelmask", "QL_PIXELMASK", bits=0b1, background=255),
    ),
)


def is_enmap_l2a(path: Path) -> bool:
    """Whether ``path`` is the spectral image of an EnMAP L2A product (its XML beside it
    has the EnMAP layout)."""
    return is_product(path, LAYOUT)


def read(path: Path, quality: Any = None) -> CubeData:
    """The reflectance cube (H, W, L) float32 of an EnMAP L2A product, with wavelengths,
    FWHM, bad bands, georeferencing, and its quality layers in the mask.

    ``quality``: the layers that mask pixels, as names (list or comma-separated); all
    those present by default, ``"none"`` for none.
    """
    return read_product(path, LAYOUT, quality)


def describe(path: Path) -> CubeHeader:
    """Size, dtype and georeferencing of the spectral image; wavelengths, FWHM, scale,
    no-data and the quality layers present from the product's files."""
    return describe_product(path, LAYOUT)
