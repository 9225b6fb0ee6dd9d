"""DESIS L2A (surface reflectance) products of DLR, read from their spectral image with
the metadata XML and quality layers beside it.

>>> scene = hu.open("DESIS-HSI-L2A-DT0483531728_001-...-V0210-SPECTRAL_IMAGE.tif")  # doctest: +SKIP

The layout followed
-------------------
A product is a set of files named ``<product>-<part>``, ``<product>`` being e.g.
``DESIS-HSI-L2A-DT0483531728_001-20200627T144624-V0210``:

``SPECTRAL_IMAGE.tif``
    The cube (235 bands, 401-1000 nm, unbinned), int16 digital numbers, in UTM (CRS and
    transform). An ENVI header ``SPECTRAL_IMAGE.hdr`` may sit beside it; it is not needed.
``METADATA.xml``, root ``<hsi_doc>``
    ``specific/bandCharacterisation/band``, one per band, with ``bandNumber`` (1-based),
    ``wavelengthCenterOfBand`` and ``wavelengthWidthOfBand`` (nm), ``gainOfBand`` and
    ``offsetOfBand``: ``reflectance = DN * gainOfBand + offsetOfBand`` (L2A: 1e-4 and 0).
    ``backgroundValue``: the no-data value (used when the GeoTIFF declares none). The
    processing level is read from the product's name.
``QL_QUALITY-2.tif``
    Ten bands, non-zero where flagged: 1 shadow, 2 land, 3 snow, 4 haze over land, 5 haze
    over water, 6 cloud over land, 7 cloud over water, 8 water, then 9 aerosol optical
    thickness and 10 water vapour (values, not flags). Shadow, snow, haze and cloud mask
    pixels (reader option ``quality=``: ``shadow``, ``snow``, ``haze``, ``cloud``, or
    ``none``). ``QL_QUALITY.tif`` (per-band quality) is not read.

Sources: the band elements and ``<hsi_doc>`` root as open DESIS readers parse them
(acolite, ``acolite/desis/metadata_QV.py`` and ``l1_convert.py``; SISTER's DESIS
converter; a DESIS granule parser using xmltodict, ``hsi_doc/specific/
bandCharacterisation/band``); the naming of the files from EnMAP-Box's DESIS import
(``enmapboxprocessing/algorithm/importdesisl2aalgorithm.py``); the band order of
``QL_QUALITY-2`` from RemoteSensingToolbox.jl (``read_qa`` for DESIS: bands 1 shadow, 3
snow, 4 | 5 haze, 6 | 7 cloud, 8 water) and the hyperproc DESIS reader, which agree. DLR's
DESIS Product Specification (PAV-DLR-ICD-003) was not at hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._common import CubeData, CubeHeader
from ._xml_products import Layout, QualityLayer, describe_product, is_product, read_product

_QUALITY = "QL_QUALITY-2"

LAYOUT = Layout(
    sensor="DESIS",
    name_pattern=r"^DESIS-HSI-L2A-.*-SPECTRAL_IMAGE\.tiff?$",
    metadata_suffix="METADATA.xml",
    root="hsi_doc",
    bands="specific/bandCharacterisation/band",
    band_number="bandNumber",
    centre="wavelengthCenterOfBand",
    fwhm="wavelengthWidthOfBand",
    gain="gainOfBand",
    offset="offsetOfBand",
    level=None,
    background=".//backgroundValue",
    quality=(
        QualityLayer("shadow", _QUALITY, bands=(1,)),
        QualityLayer("snow", _QUALITY, bands=(3,)),
        QualityLayer("haze", _QUALITY, bands=(4, 5)),
        QualityLayer("cloud", _QUALITY, bands=(6, 7)),
    ),
)


def is_desis_l2a(path: Path) -> bool:
    """Whether ``path`` is the spectral image of a DESIS L2A product (its XML beside it
    has the DESIS layout)."""
    return is_product(path, LAYOUT)


def read(path: Path, quality: Any = None) -> CubeData:
    """The reflectance cube (H, W, L) float32 of a DESIS L2A product, with wavelengths,
    FWHM, bad bands, georeferencing, and its quality flags in the mask.

    ``quality``: the flags that mask pixels, as names (list or comma-separated); all by
    default, ``"none"`` for none.
    """
    return read_product(path, LAYOUT, quality)


def describe(path: Path) -> CubeHeader:
    """Size, dtype and georeferencing of the spectral image; wavelengths, FWHM, scale,
    no-data and the quality layers present from the product's files."""
    return describe_product(path, LAYOUT)
