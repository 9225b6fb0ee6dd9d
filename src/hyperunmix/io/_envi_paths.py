"""Which paths make an ENVI image: a data file with its text header beside it.

Apart from :mod:`~hyperunmix.io.envi` so that recognising an ENVI file does not import
``spectral`` and rasterio.
"""

from __future__ import annotations

from pathlib import Path

#: Extensions of ENVI binary data files: ENVI when a header sits beside them, and when
#: writing (the header is then created beside them).
ENVI_DATA_EXTENSIONS = (".img", ".dat", ".bsq", ".bil", ".bip", ".raw", ".bin", ".cal")
#: Extension of the data file of an ENVI spectral library: looked for beside a header, never
#: written (a library is no image).
ENVI_LIBRARY_EXTENSION = ".sli"


def envi_header_of(data_path: Path) -> Path | None:
    """The ENVI header beside ``data_path`` (``x.hdr`` or ``x.img.hdr``), if any."""
    for header in (data_path.with_suffix(".hdr"), data_path.with_name(data_path.name + ".hdr")):
        if header.is_file():
            return header
    return None


def is_envi_data(path: Path) -> bool:
    """Whether ``path`` names an ENVI data file: an existing file with a header beside it,
    or a file still to be written with an ENVI data extension (``.img``, ``.dat``, ...).

    These extensions are shared with other formats, so an existing file without a header
    is left to be recognised by its first bytes.
    """
    if path.is_file():
        return envi_header_of(path) is not None
    return path.suffix.lower() in ENVI_DATA_EXTENSIONS
