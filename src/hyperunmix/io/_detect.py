"""Which format family a path holds: by extension, or by content when the extension is
ambiguous (``.img``, ``.dat``, ``.h5``) or missing."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import FileFormatError

#: Format families and what they cover.
FAMILIES = {
    "envi": "ENVI header + binary data (.hdr with .img / .dat / .bsq / .bil / .bip / .raw)",
    "gtiff": "GeoTIFF (.tif, .tiff)",
    "netcdf": "NetCDF (.nc, .nc4, .cdf)",
    "mat": "MATLAB v5 or v7.3 (.mat)",
    "npy": "NumPy (.npy, .npz)",
}

#: Extensions that name one family.
_BY_EXTENSION = {
    ".hdr": "envi",
    ".tif": "gtiff",
    ".tiff": "gtiff",
    ".gtif": "gtiff",
    ".nc": "netcdf",
    ".nc4": "netcdf",
    ".cdf": "netcdf",
    ".mat": "mat",
    ".npy": "npy",
    ".npz": "npy",
}

#: Extensions of ENVI binary data files: ENVI when a header sits beside them, and when
#: writing (the header is then created beside them).
ENVI_DATA_EXTENSIONS = (".img", ".dat", ".bsq", ".bil", ".bip", ".raw", ".bin")

#: Leading bytes of each family. MATLAB v7.3 files are HDF5 with a 512-byte MATLAB
#: header in front, so "MATLAB" must be tested before the bare HDF5 signature.
_MAGIC = (
    (b"MATLAB", "mat"),
    (b"II*\x00", "gtiff"),
    (b"MM\x00*", "gtiff"),  # classic TIFF, both byte orders
    (b"II+\x00", "gtiff"),
    (b"MM\x00+", "gtiff"),  # BigTIFF
    (b"CDF\x01", "netcdf"),
    (b"CDF\x02", "netcdf"),
    (b"CDF\x05", "netcdf"),
    (b"\x89HDF\r\n\x1a\n", "netcdf"),  # netCDF-4 is HDF5
    (b"\x93NUMPY", "npy"),
    (b"PK\x03\x04", "npy"),  # .npy, and .npz (a zip)
    (b"ENVI", "envi"),  # an ENVI header under another name
)


def envi_header_of(data_path: Path) -> Path | None:
    """The ENVI header beside ``data_path`` (``x.hdr`` or ``x.img.hdr``), if any."""
    for header in (data_path.with_suffix(".hdr"), data_path.with_name(data_path.name + ".hdr")):
        if header.is_file():
            return header
    return None


def _sniff(path: Path) -> str | None:
    if envi_header_of(path) is not None:
        return "envi"
    with open(path, "rb") as stream:
        head = stream.read(8)
    for magic, family in _MAGIC:
        if head.startswith(magic):
            return family
    return None


def format_of(path: str | os.PathLike) -> str:
    """The format family of ``path``: ``"envi"``, ``"gtiff"``, ``"netcdf"``, ``"mat"`` or
    ``"npy"``.

    The extension decides when it names one family. Otherwise an existing file is
    identified by an ENVI header beside it or by its first bytes; a path still to be
    written with an ENVI data extension (``.img``, ``.dat``, ...) is ENVI.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in _BY_EXTENSION:
        return _BY_EXTENSION[suffix]
    if path.is_file():
        family = _sniff(path)
        if family is not None:
            return family
    elif suffix in ENVI_DATA_EXTENSIONS:
        return "envi"
    known = "; ".join(FAMILIES.values())
    raise FileFormatError(
        f"cannot tell the format of {path} from its extension {suffix or '(none)'!r} "
        f"or its content; known formats: {known}"
    )
