"""The ``hyperunmix`` command line: demo, unmix, bench, datasets, info.

Every command runs inside :func:`reports_errors`: a :class:`~hyperunmix.errors.HyperunmixError`
(bad input the user can fix) prints ``error: <message>`` on one line and exits with status 2;
any other exception prints one line too (status 1) unless ``hyperunmix --debug`` asks for the
traceback. Tables go to stdout; progress (bars on a terminal, lines otherwise,
:mod:`hyperunmix.progress`) and warnings go to stderr.

Commands import the readers, the methods and matplotlib when they run, so that
``hyperunmix --help`` stays instant. The benchmark's command lives with the benchmark
(:func:`hyperunmix.bench.cli.bench_command`) and is registered here.
"""

from __future__ import annotations

import functools
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

import typer
from rich.console import Console
from rich.table import Table

from .base import Result, Unmixer
from .bench.cli import bench_command
from .conventions import MEANINGS, check_convention
from .errors import HyperunmixError, InputError
from .identification import MAX_ANGLE_DEG, Identification, identify_result, reference_library
from .progress import progress_display, stage
from .registry import available_methods, get_method
from .scene import Scene

#: Exit status of bad input (a HyperunmixError); 1 is left for unexpected failures.
EXIT_BAD_INPUT = 2
DATA_DIR_HELP = "Data directory (default: $HYPERUNMIX_DATA, else the user data directory)."


class _DemoScene(TypedDict):
    """Arguments of :func:`hyperunmix.synthetic.make_scene` for the demo."""

    n_rows: int
    n_cols: int
    n_endmembers: int
    abundances: str
    snr_db: float


#: The demo: a synthetic scene with the analytic library, VCA endmembers then FCLS.
DEMO_SCENE: _DemoScene = {
    "n_rows": 64,
    "n_cols": 64,
    "n_endmembers": 4,
    "abundances": "fields",
    "snr_db": 30.0,
}
DEMO_METHOD = "vca"
READ_HELP = (
    "Reader option key=value, repeatable: key=ARRAY (.npz / .mat / NetCDF variable), "
    "rows=H cols=W order=F|C (pixel matrices), scale=0.0002, wavelengths=[...]."
)
#: What `info` reads is the header only, so only the options that locate the cube apply.
INFO_READ_HELP = (
    "Reader option key=value, repeatable: key=ARRAY (.npz / .mat / NetCDF "
    "variable), rows=H cols=W (pixel matrices in .mat / .npy / .npz)."
)

app = typer.Typer(
    name="hyperunmix",
    help="Hyperspectral unmixing: abundance maps and endmember spectra from a cube.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


#: Set by the top-level ``--debug`` flag before each command runs.
_settings = {"debug": False}


@app.callback()
def main(
    debug: bool = typer.Option(
        False, "--debug", help="Show the full traceback of unexpected errors."
    ),
) -> None:
    """Hyperspectral unmixing: abundance maps and endmember spectra from a cube."""
    _settings["debug"] = debug


# -- error handling ------------------------------------------------------------------------
def reports_errors(command: Callable) -> Callable:
    """Run ``command`` with one-line error reports and one-line warnings (see module doc)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            try:
                return command(*args, **kwargs)
            except (typer.Exit, typer.Abort):
                raise
            except HyperunmixError as exc:
                _fail(str(exc), EXIT_BAD_INPUT)
            except Exception as exc:
                if _settings["debug"]:
                    raise
                _fail(
                    f"unexpected {type(exc).__name__}: {exc} "
                    "(run `hyperunmix --debug ...` for the traceback)",
                    1,
                )

    return wrapper


def _fail(message: str, status: int) -> None:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    raise typer.Exit(status)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {' '.join(str(message).split())}", file=sys.stderr)


# -- progress ------------------------------------------------------------------------------
def run_with_progress(model: Unmixer, scene: Scene) -> Result:
    """``model.fit_unmix(scene)`` with its progress shown on stderr
    (:func:`hyperunmix.progress.progress_display`): a ``fit`` and an ``unmix`` stage, and
    the method's own reports between them (a deep method's epochs)."""
    with progress_display() as report:
        model.set_progress(report)
        try:
            with stage(report, "fit", method=model.name):
                start = time.perf_counter()
                model.fit(scene)
                model.fit_seconds_ = time.perf_counter() - start
            with stage(report, "unmix", method=model.name):
                return model.unmix(scene)
        finally:
            model.set_progress(None)


# -- commands ------------------------------------------------------------------------------
@app.command()
@reports_errors
def demo(
    out: Path = typer.Option(
        Path("hyperunmix-demo"),
        "--out",
        "-o",
        help="Directory for the maps, spectra, metrics and figures.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the scene and of VCA."),
) -> None:
    """Unmix a built-in synthetic scene (no data files needed) and write everything."""
    from .output import save_result
    from .registry import make_method
    from .synthetic import make_scene

    scene = make_scene(**DEMO_SCENE, seed=seed)
    assert scene.truth is not None  # a synthetic scene comes with its truth
    model = make_method(DEMO_METHOD, n_endmembers=scene.truth.n_endmembers, seed=seed)
    result = run_with_progress(model, scene)
    written = save_result(result, out, truth=scene.truth, scene=scene)
    _print_summary(scene, result, written)


@app.command()
@reports_errors
def unmix(
    source: str = typer.Argument(
        ...,
        help="A cube file (ENVI .hdr, GeoTIFF, NetCDF, .mat, "
        ".npy/.npz) or a dataset name (see `datasets`).",
    ),
    method: str = typer.Option(
        ..., "--method", "-m", help=f"One of: {', '.join(available_methods())}."
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Output directory; for a chunked run a .zarr store, .tif or .hdr file.",
    ),
    n_endmembers: int | None = typer.Option(
        None,
        "-p",
        "--n-endmembers",
        help="P; default: the truth's, else the method's (HySime's estimate, or the "
        "endmember file's count).",
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed, for methods that take one."),
    endmembers: str | None = typer.Option(
        None,
        "--endmembers",
        help="Endmembers of abundance solvers: vca | nfindr | atgp (extracted from the "
        "scene) or a file of spectra (.csv, .npy, .npz, .mat).",
    ),
    device: str | None = typer.Option(
        None,
        "--device",
        help="Deep methods: auto (CUDA when present, else the CPU; the default) | cpu | cuda.",
    ),
    param: list[str] = typer.Option(
        [],
        "--param",
        help="Method option key=value (value parsed as JSON if it can be); repeatable.",
    ),
    fmt: str | None = typer.Option(
        None, "--format", help="Map format: gtiff | envi | netcdf | npz; default: the input's."
    ),
    keep_bad_bands: bool = typer.Option(
        False, "--keep-bad-bands", help="Unmix all bands, including those flagged bad."
    ),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Write PNG figures."),
    read: list[str] = typer.Option([], "--read", help=READ_HELP),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    chunks: int | None = typer.Option(
        None,
        "--chunks",
        min=16,
        help="Unmix chunk by chunk on Dask, for scenes larger than memory: pixels per chunk "
        "side. --out is then a Zarr store (.zarr), a GeoTIFF (.tif) or an ENVI image "
        "(.hdr); the method is fitted on a stratified sample; rerunning resumes.",
    ),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="Chunked run on a dask.distributed cluster: its scheduler address "
        "(tcp://host:8786); default: threads in this process.",
    ),
    fit_sample: int = typer.Option(
        200_000,
        "--fit-sample",
        min=1,
        help="Chunked run: pixels sampled, stratified in space, to fit the method on.",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace files the run would otherwise refuse to: existing files of the "
        "output that no earlier hyperunmix run into it wrote and, for a chunked run, "
        "the output of another run. Without it, the files of an earlier run into the "
        "same output (as its run.json lists them) are replaced, or removed when this "
        "run does not write them; the input is never replaced.",
    ),
    convention: str | None = typer.Option(
        None,
        "--convention",
        help="Abundance convention of the maps: absolute (fractions of the endmember "
        "spectra, as FCLS) | shares (shares of unit-peak spectra whatever the "
        "brightness, as normalised NNLS); default: the method's own.",
    ),
    identify: str | None = typer.Option(
        None,
        "--identify",
        help="Name the endmembers after the spectral library materials they match: a "
        "library file or folder (ENVI .sli, USGS splib07, ECOSTRESS / ASTER, CSV) or a "
        "built-in library (usgs, samson, jasper_ridge). Maps, CSV columns and figures take "
        "the names, run.json the angles; an endmember matching nothing stays endmember_k.",
    ),
    identify_max_angle: float = typer.Option(
        MAX_ANGLE_DEG,
        "--identify-max-angle",
        help="Largest spectral angle (degrees) at which --identify names an endmember.",
    ),
) -> None:
    """Unmix a file or a named dataset; write maps, spectra, figures (and metrics with truth).

    With --chunks or --scheduler, or an --out ending in .zarr, the scene is never held in
    memory: see `Scaling out` in the README."""
    from ._guard import writable_directory
    from .output import map_format, save_result

    if convention is not None:
        check_convention(convention)
    estimator = get_method(method)
    read_options = parse_params(read)
    options = {"seed": seed, "device": device, "endmembers": endmembers, **parse_params(param)}
    params = method_kwargs(estimator, {**options, "n_endmembers": n_endmembers})
    estimator(**params).validate_params()  # a bad --param fails now, before any data are read
    chunked = chunks is not None or scheduler is not None or out.suffix.lower() == ".zarr"
    if not identify_max_angle > 0:
        raise InputError(f"--identify-max-angle must be positive, got {identify_max_angle}")
    if chunked:
        unmix_chunked(
            source,
            method,
            params,
            out,
            chunks=chunks,
            scheduler=scheduler,
            fit_sample=fit_sample,
            seed=seed or 0,
            overwrite=overwrite,
            keep_bad_bands=keep_bad_bands,
            read_options=read_options,
            data_dir=data_dir,
            convention=convention,
            identify=identify,
            identify_max_angle=identify_max_angle,
        )
        return
    map_format(None, fmt)  # a bad --format fails now, not after a long fit
    scene = load_source(source, data_dir, read_options)
    if not keep_bad_bands and len(scene.bad_bands):
        scene = scene.drop_bad_bands()
    if n_endmembers is None and scene.truth is not None:
        n_endmembers = scene.truth.n_endmembers
    model = estimator(**method_kwargs(estimator, {**options, "n_endmembers": n_endmembers}))
    library = None
    if identify is not None:
        library = reference_library(
            identify, data_dir, wavelengths=scene.wavelengths, fwhm=scene.fwhm
        )
    # Created and tried once the input and the options are known good, before the fit: an
    # output that cannot be written is not found out after a long fit.
    writable_directory(out)
    result = run_with_progress(model, scene)
    if convention is not None:
        result = result.in_convention(convention)
    identification = None
    if library is not None:
        result, identification = identify_result(
            result,
            library,
            fwhm=scene.fwhm,
            max_angle_deg=identify_max_angle,
            library_name=identify,
        )
    written = save_result(
        result,
        out,
        truth=scene.truth,
        scene=scene,
        fmt=fmt,
        figures=figures,
        overwrite=overwrite,
        identification=identification,
    )
    _print_summary(scene, result, written)
    if identification is not None:
        _print_identification(identification)


datasets_app = typer.Typer()
app.add_typer(datasets_app, name="datasets")
# Written out rather than read from hyperunmix.datasets.DOWNLOADS, whose import would slow
# down every command's start; a test checks that it names every key.
DOWNLOAD_NAMES_HELP = (
    "What to download: the datasets samson, jasper_ridge; the spectral libraries "
    "library:samson, library:jasper_ridge, library:usgs; the abundance maps maps:spatial2, "
    "maps:spatial_3em, maps:squares_3em. None: all of them."
)


@datasets_app.callback(invoke_without_command=True)
@reports_errors
def datasets(
    ctx: typer.Context,
    data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
) -> None:
    """List the named datasets and whether their files are present; `download` fetches them."""
    from .datasets import available

    if ctx.invoked_subcommand is not None:
        return
    statuses = available(data_dir)
    table = Table(title="datasets")
    for column in ("name", "present", "looked in"):
        table.add_column(column)
    for status in statuses:
        table.add_row(status.name, "yes" if status.present else "no", str(status.path))
    Console().print(table)
    missing = " ".join(status.name for status in statuses if not status.present)
    if missing:
        where = "" if data_dir is None else f" --data-dir {data_dir}"
        typer.echo(f"download the missing ones: hyperunmix datasets download {missing}{where}")


@datasets_app.command("download")
@reports_errors
def datasets_download(
    ctx: typer.Context,
    names: list[str] | None = typer.Argument(
        None, metavar="NAME", help=DOWNLOAD_NAMES_HELP, show_default=False
    ),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
) -> None:
    """Download datasets, libraries and abundance maps into the data directory.

    From their public GitHub sources, or from the mirror $HYPERUNMIX_DATA_URL
    (a base URL serving the data directory's layout) when it is set. Files
    already present with the right md5 are kept; every download is checked."""
    from .datasets import data_home, download

    if data_dir is None:  # `datasets --data-dir D download`
        assert ctx.parent is not None  # download is a subcommand of `datasets`
        data_dir = ctx.parent.params["data_dir"]
    fetched: list = []
    try:
        with progress_display() as report:
            download(names or (), data_dir, progress=report, on_file=fetched.append)
    finally:  # after the progress display, and also for the files before a failure
        for file in fetched:
            verb = "downloaded" if file.downloaded else "present   "
            typer.echo(f"{verb}  {file.path}  ({file.size:,} bytes)")
    n_downloaded = sum(file.downloaded for file in fetched)
    typer.echo(
        f"{n_downloaded} downloaded, {len(fetched) - n_downloaded} already present "
        f"with the right md5, in {data_home(data_dir)}"
    )


app.command("bench")(reports_errors(bench_command))


@app.command()
@reports_errors
def info(
    path: Path = typer.Argument(..., help="A cube file."),
    read: list[str] = typer.Option([], "--read", help=INFO_READ_HELP),
) -> None:
    """Describe a cube file without loading it: size, dtype, wavelengths, georeferencing."""
    from .io import describe

    table = Table(title=str(path), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for field, value in describe_rows(describe(path, **parse_params(read))):
        table.add_row(field, value)
    Console().print(table)


def describe_rows(description: dict[str, Any]) -> list[tuple[str, str]]:
    """Readable (field, value) rows of a :func:`hyperunmix.io.describe` dict."""
    from .io import FAMILIES

    fields = dict(description)
    shape = fields.pop("shape")
    kind = fields.pop("kind", "image")
    if kind == "image":
        size = f"{shape[0]} x {shape[1]} px, {shape[2]} bands"
    else:  # a spectral library: (N spectra, L bands)
        size = f"{kind}: {shape[0]} spectra, {shape[1]} bands"
    fmt = fields.pop("format")
    rows = [
        ("path", str(fields.pop("path"))),
        ("format", f"{fmt}: {FAMILIES.get(fmt, fmt)}"),
        ("size", size),
        ("dtype", str(fields.pop("dtype"))),
    ]
    wavelengths = fields.pop("wavelength_range")
    rows.append(
        (
            "wavelengths",
            "none" if wavelengths is None else f"{wavelengths[0]:.1f} - {wavelengths[1]:.1f} nm",
        )
    )
    georef = fields.pop("georef")
    if georef is None:
        rows.append(("georeferencing", "none"))
    else:
        rows.append(("crs", str(georef["crs"])))
        rows.append(("transform", ", ".join(f"{v:.12g}" for v in georef["transform"])))
    rows.extend((key, str(value)) for key, value in fields.items())
    return rows


# -- unmix helpers -------------------------------------------------------------------------
#: Reader options a chunked (lazy) read takes; the others apply to in-memory reads.
LAZY_READ_OPTIONS = ("key", "scale", "ortho")


def unmix_chunked(
    source: str,
    method: str,
    params: dict[str, Any],
    out: Path,
    *,
    chunks: int | None,
    scheduler: str | None,
    fit_sample: int,
    seed: int,
    overwrite: bool,
    keep_bad_bands: bool,
    read_options: dict[str, Any],
    data_dir: Path | None,
    convention: str | None = None,
    identify: str | None = None,
    identify_max_angle: float = MAX_ANGLE_DEG,
) -> None:
    """``hyperunmix unmix`` chunk by chunk (:func:`hyperunmix.scale.unmix_large`), with the
    progress of each stage (sample, the method's fit, chunks, export) on stderr."""
    from .scale import unmix_large

    if Path(source).exists():
        unsupported = sorted(set(read_options) - set(LAZY_READ_OPTIONS))
        if unsupported:
            raise InputError(
                f"--read {', '.join(unsupported)} does not apply to a chunked "
                f"run, which reads {', '.join(LAZY_READ_OPTIONS)} only"
            )
        source_arg: Any = source
    else:
        source_arg = load_source(source, data_dir, read_options)  # a dataset name
        read_options = {}
    with progress_display() as report:
        run = unmix_large(
            source_arg,
            method,
            out,
            params=params,
            chunks=chunks,
            client=scheduler,
            fit_sample=fit_sample,
            seed=seed,
            keep_bad_bands=keep_bad_bands,
            overwrite=overwrite,
            progress=report,
            open_options=read_options,
            convention=convention,
            identify=identify,
            identify_max_angle=identify_max_angle,
            data_dir=data_dir,
        )
    table = Table(title=f"{method}, chunk by chunk", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    n_rows, n_cols, n_bands = run.shape
    table.add_row("scene", f"{n_rows} x {n_cols} px, {n_bands} bands")
    table.add_row("chunks", f"{run.n_chunks} ({run.n_skipped} already written)")
    table.add_row("abundances", _convention_line(run.convention))
    table.add_row("time", f"{run.seconds:.1f} s")
    for name, path in run.files.items():
        table.add_row(name, str(path))
    Console().print(table)
    if run.identification is not None:
        _print_identification(run.identification)


def load_source(
    source: str, data_dir: Path | None, read_options: dict[str, Any] | None = None
) -> Scene:
    """The scene in the file ``source`` (read with ``read_options``), else the dataset
    named ``source``."""
    from . import datasets
    from .io import open_scene

    if Path(source).exists():
        return open_scene(source, **(read_options or {}))
    names = [status.name for status in datasets.available(data_dir)]
    if source.lower() in names:
        return datasets.load(source.lower(), data_dir=data_dir)
    raise InputError(
        f"{source}: no such file, and not a dataset name (datasets: {', '.join(names)})"
    )


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``["k=v", ...]`` -> ``{k: v}``, each value parsed as JSON when it is valid JSON
    (``5``, ``0.1``, ``true``, ``[1, 2]``) and kept as a string otherwise."""
    params = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--param expects key=value, got {pair!r}")
        try:
            params[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            params[key.strip()] = text
    return params


def method_kwargs(estimator: type[Unmixer], options: dict[str, Any]) -> dict[str, Any]:
    """The options (those not None) as keyword arguments of ``estimator``; an option the
    method does not take is an error naming the ones it does."""
    accepted = estimator._param_names()
    given = {key: value for key, value in options.items() if value is not None}
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise InputError(
            f"method {estimator.name!r} does not take "
            f"{', '.join(unknown)}; its options: {', '.join(accepted)}"
        )
    return given


def _convention_line(convention: str) -> str:
    return f"{convention}: {MEANINGS[convention]}"


def _scoring_line(metrics: dict[str, Any]) -> str:
    """How the maps were scored, with the hint a user needs when the truth's convention is
    not the maps' (the maps on disk are not what was scored)."""
    scored, own = metrics["convention"], metrics["result_convention"]
    if scored == own:
        return f"against the truth, in its {scored} convention"
    return (
        f"against the truth, in its {scored} convention: the {own} maps were converted "
        f"through their endmembers for scoring (write them so with --convention {scored})"
    )


def _print_identification(identification: Identification) -> None:
    """Each endmember's name, best material, angles and margin over the next material."""
    table = Table(title=f"identified in {identification.library}")
    for column in ("endmember", "named", "best match", "angle", "continuum angle", "margin"):
        table.add_column(column)
    for k, matches in enumerate(identification.matches):
        best = matches[0] if matches else None
        table.add_row(
            str(k + 1),
            identification.labels[k],
            "-" if best is None else best.material,
            "-" if best is None else f"{best.angle_deg:.2f} deg",
            "-" if best is None else f"{best.continuum_angle_deg:.2f} deg",
            f"{identification.margins_deg[k]:.2f} deg",
        )
    Console().print(table)


def _print_summary(scene: Scene, result: Result, written: dict[str, Path]) -> None:
    table = Table(title=f"{result.method} on {scene.name}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row(
        "scene",
        f"{scene.n_rows} x {scene.n_cols} px, {scene.n_bands} bands, {scene.n_pixels} valid",
    )
    table.add_row("endmembers", str(result.n_endmembers))
    table.add_row("abundances", _convention_line(result.convention))
    table.add_row("time", f"fit {result.fit_seconds:.2f} s, unmix {result.unmix_seconds:.2f} s")
    if "metrics" in written:
        metrics = json.loads(written["metrics"].read_text())
        table.add_row("scored", _scoring_line(metrics))
        for key, unit in (
            ("armse", ""),
            ("msad_deg", " deg"),
            ("sre_db", " dB"),
            ("reconstruction_rmse", ""),
        ):
            if metrics.get(key) is not None:
                table.add_row(key, f"{metrics[key]:.4g}{unit}")
    table.add_row("written to", str(Path(written["run"]).parent))
    Console().print(table)
