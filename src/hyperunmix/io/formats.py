"""File formats: one :class:`Format` per family, each registered by one call.

A format says how its files are recognised (extensions, leading bytes, optionally a hook)
and names the module that reads and writes them. That module is imported on first use:
rasterio and xarray take seconds to import, which ``import hyperunmix`` should not pay.
:func:`~hyperunmix.io.open_scene`, :func:`~hyperunmix.io.describe`,
:func:`~hyperunmix.io.write_scene` and :func:`~hyperunmix.io.write_maps` reach formats only
through :data:`FORMATS`, so adding one takes a reader module and a :func:`register` call.

>>> FORMATS["gtiff"].extensions
('.tif', '.tiff', '.gtif')
>>> format_of("scene.nc4")
'netcdf'
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FileFormatError
from ._envi_paths import is_envi_data
from ._products import is_emit, is_prisma_l2d
from .desis import is_desis_l2a
from .enmap import is_enmap_l2a

if TYPE_CHECKING:
    from ._common import CubeData, CubeHeader


@dataclass(frozen=True, kw_only=True)
class Format:
    """A format family: how its files are recognised, and the module that reads and
    writes them.

    Attributes
    ----------
    name : str
        Family key, as in ``Scene.metadata["format"]`` and ``write_maps(..., fmt=name)``.
    description : str
        The format and its extensions, for messages and ``hyperunmix info``.
    module : str
        Import path of the module holding ``read(path, **options) -> CubeData``,
        ``describe(path, **options) -> CubeHeader`` and ``write(path, data: CubeData)``
        (see :mod:`hyperunmix.io._common`); the keyword options of ``read`` and
        ``describe`` are the format's reader options. Imported on first use.
    extensions : tuple of str
        Lower-case extensions, dot included, that name this format alone.
    magic : tuple of bytes
        Signatures a file of this format starts with; they identify a file whose
        extension names no format.
    default_suffix : str
        Extension :func:`~hyperunmix.io.write_maps` gives a path without one.
    sniff : callable, optional
        ``sniff(path) -> bool``, for formats whose files the other fields cannot tell:
        asked after the extensions and before the signatures, also for paths still to be
        written (ENVI: a data file with its header beside it).
    refines : str, optional
        For a sensor product stored in a general format (EMIT L2A: NetCDF), the name of
        that format: an existing file found to be of it is this product when ``sniff``
        says so, which tells the product by its structure rather than its name. Asked in
        registration order, before the file is taken for the general format.
    """

    name: str
    description: str
    module: str
    extensions: tuple[str, ...] = ()
    magic: tuple[bytes, ...] = ()
    default_suffix: str = ""
    sniff: Callable[[Path], bool] | None = None
    refines: str | None = None

    @property
    def read(self) -> Callable[..., CubeData]:
        """``read(path, **options)``: the cube of a file and the metadata it carries."""
        return self._function("read")

    @property
    def describe(self) -> Callable[..., CubeHeader]:
        """``describe(path, **options)``: shape, dtype, wavelengths and georeferencing,
        without loading the cube."""
        return self._function("describe")

    @property
    def write(self) -> Callable[[Path, CubeData], None]:
        """``write(path, data)``: a cube and its metadata to ``path``, atomically; a
        FileFormatError for a format read only (a sensor product)."""
        module = importlib.import_module(self.module)
        if not hasattr(module, "write"):
            raise FileFormatError(
                f"{self.description} is read, not written: write the scene or its maps as "
                "GeoTIFF, ENVI or NetCDF"
            )
        return module.write

    def _function(self, name: str) -> Any:
        # import_module imports once, then returns the module from sys.modules.
        return getattr(importlib.import_module(self.module), name)


#: Name -> format, in the order of registration, which is the order detection asks them in.
FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add ``fmt`` to :data:`FORMATS` and return it.

    A name already registered is refused, and so is an extension another format claims:
    detection would never reach the second one.
    """
    if fmt.name in FORMATS:
        raise ValueError(f"a format named {fmt.name!r} is already registered")
    for other in FORMATS.values():
        shared = sorted(set(fmt.extensions) & set(other.extensions))
        if shared:
            raise ValueError(f"{', '.join(shared)} already name the format {other.name!r}")
    FORMATS[fmt.name] = fmt
    return fmt


class _Descriptions(Mapping[str, str]):
    """Name -> description of each format in :data:`FORMATS`, as registered at the time."""

    def __getitem__(self, name: str) -> str:
        return FORMATS[name].description

    def __iter__(self) -> Iterator[str]:
        return iter(FORMATS)

    def __len__(self) -> int:
        return len(FORMATS)

    def __repr__(self) -> str:
        return repr(dict(self))


#: Format families and what they cover: name -> description of every registered format.
FAMILIES: Mapping[str, str] = _Descriptions()


def format_of(path: str | os.PathLike) -> str:
    """The format family of ``path``: the name of a registered format (``"envi"``,
    ``"gtiff"``, ``"netcdf"``, ``"mat"``, ``"npy"`` or one added by :func:`register`).

    The extension decides when a format claims it. Otherwise a format's ``sniff`` hook may
    claim the path (ENVI: an existing file with a header beside it, or a path still to be
    written with an ENVI data extension, ``.img``, ``.dat``, ...); else an existing file is
    identified by its first bytes. An existing file of a general format is then offered to
    the sensor products that refine it (:attr:`Format.refines`), whose ``sniff`` looks at
    its structure.
    """
    path = Path(path)
    family = _family_of(path)
    if path.is_file():
        for fmt in FORMATS.values():
            if fmt.refines == family and fmt.sniff is not None and fmt.sniff(path):
                return fmt.name
    return family


def _family_of(path: Path) -> str:
    """The format :func:`format_of` finds before asking the sensor products."""
    suffix = path.suffix.lower()
    for fmt in FORMATS.values():
        if suffix in fmt.extensions:
            return fmt.name
    for fmt in FORMATS.values():
        if fmt.refines is None and fmt.sniff is not None and fmt.sniff(path):
            return fmt.name
    if path.is_file():
        head = _head(path)
        for fmt in FORMATS.values():
            if head.startswith(fmt.magic):
                return fmt.name
    known = "; ".join(FAMILIES.values())
    raise FileFormatError(
        f"cannot tell the format of {path} from its extension {suffix or '(none)'!r} "
        f"or its content; known formats: {known}"
    )


def _head(path: Path) -> bytes:
    """The first bytes of ``path``, as many as the longest signature registered."""
    size = max((len(magic) for fmt in FORMATS.values() for magic in fmt.magic), default=0)
    with open(path, "rb") as stream:
        return stream.read(size)


# -- the built-in formats ----------------------------------------------------------------
register(
    Format(
        name="envi",
        description="ENVI header + binary data (.hdr with .img / .dat / .bsq / .bil / .bip / .raw)",
        module="hyperunmix.io.envi",
        extensions=(".hdr",),
        magic=(b"ENVI",),  # a header under another name
        default_suffix=".hdr",
        sniff=is_envi_data,
    )
)
register(
    Format(
        name="gtiff",
        description="GeoTIFF (.tif, .tiff)",
        module="hyperunmix.io.geotiff",
        extensions=(".tif", ".tiff", ".gtif"),
        magic=(b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),  # TIFF, BigTIFF; both byte orders
        default_suffix=".tif",
    )
)
register(
    Format(
        name="netcdf",
        description="NetCDF (.nc, .nc4, .cdf)",
        module="hyperunmix.io.netcdf",
        extensions=(".nc", ".nc4", ".cdf"),
        magic=(b"CDF\x01", b"CDF\x02", b"CDF\x05", b"\x89HDF\r\n\x1a\n"),  # netCDF-4 is HDF5
        default_suffix=".nc",
    )
)
register(
    Format(
        name="mat",
        description="MATLAB v5 or v7.3 (.mat)",
        module="hyperunmix.io.matlab",
        extensions=(".mat",),
        # v7.3 files are HDF5 behind a 512-byte MATLAB text header: they start with
        # "MATLAB", never with the HDF5 signature (which sits at byte 512), so NetCDF's
        # signatures, asked first, cannot claim them.
        magic=(b"MATLAB",),
        default_suffix=".mat",
    )
)
register(
    Format(
        name="npy",
        description="NumPy (.npy, .npz)",
        module="hyperunmix.io.numpy_io",
        extensions=(".npy", ".npz"),
        magic=(b"\x93NUMPY", b"PK\x03\x04"),  # .npy, and .npz (a zip)
        default_suffix=".npz",
    )
)


# -- sensor products, told by their structure within the general formats above -------------
register(
    Format(
        name="emit",
        description="NASA EMIT L2A RFL / L1B RDN granule (NetCDF-4)",
        module="hyperunmix.io.emit",
        refines="netcdf",
        sniff=is_emit,
    )
)
register(
    Format(
        name="enmap",
        description="DLR EnMAP L2A product (*-SPECTRAL_IMAGE.TIF with its METADATA.XML)",
        module="hyperunmix.io.enmap",
        refines="gtiff",
        sniff=is_enmap_l2a,
    )
)
register(
    Format(
        name="desis",
        description="DLR DESIS L2A product (*-SPECTRAL_IMAGE.tif with its METADATA.xml)",
        module="hyperunmix.io.desis",
        refines="gtiff",
        sniff=is_desis_l2a,
    )
)
register(
    Format(
        name="prisma",
        description="ASI PRISMA L2D product (HDF-EOS5, .he5)",
        module="hyperunmix.io.prisma",
        extensions=(".he5",),
        refines="netcdf",
        sniff=is_prisma_l2d,
    )
)
