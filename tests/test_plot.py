"""Figures: layout, shared colour scale, truth styling, atomic PNG output."""

import numpy as np
import pytest

from hyperunmix import InputError
from hyperunmix.plot import (
    plot_abundance_comparison,
    plot_abundances,
    plot_endmembers,
    plot_spectra_comparison,
    save_figure,
)

NAMES = ["Soil", "Tree", "Water"]


def _maps(seed, shape=(5, 4, 3)):
    return np.random.default_rng(seed).dirichlet(np.ones(shape[-1]), size=shape[:2])


def _image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def test_abundance_comparison_grid_has_rows_per_entry_and_a_shared_scale():
    maps = {"truth": _maps(0), "fcls": _maps(1), "deq": 3 * _maps(2)}
    fig = plot_abundance_comparison(maps, NAMES)
    panels = _image_axes(fig)
    assert len(panels) == 9
    assert all(ax.images[0].get_clim() == (0.0, 1.0) for ax in panels)
    assert [ax.get_title() for ax in panels[:3]] == NAMES
    assert [panels[3 * r].get_ylabel() for r in range(3)] == ["truth", "fcls", "deq"]
    # one colour bar for the whole grid
    assert len(fig.axes) == 10


def test_abundances_put_truth_above_the_estimate_and_keep_nan_masked():
    estimate = _maps(3)
    estimate[0, 0] = np.nan
    fig = plot_abundances(estimate, NAMES, truth=_maps(4))
    panels = _image_axes(fig)
    assert [panels[0].get_ylabel(), panels[3].get_ylabel()] == ["truth", "estimate"]
    assert np.ma.is_masked(panels[3].images[0].get_array()[0, 0])
    assert len(_image_axes(plot_abundances(estimate))) == 3


def test_abundance_comparison_rejects_mismatched_maps():
    with pytest.raises(InputError, match="one shape"):
        plot_abundance_comparison({"a": _maps(0), "b": _maps(1, (5, 4, 2))})
    with pytest.raises(InputError, match="2 names for 3 materials"):
        plot_abundance_comparison({"a": _maps(0)}, ["x", "y"])


def test_spectra_against_wavelength_with_truth_dashed():
    rng = np.random.default_rng(5)
    estimate, truth = rng.random((3, 12)), rng.random((3, 12))
    wavelengths = np.linspace(400, 900, 12)
    fig = plot_endmembers(estimate, wavelengths, NAMES, truth=truth)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == NAMES
    est_line, truth_line = panels[1].get_lines()
    np.testing.assert_allclose(est_line.get_xdata(), wavelengths)
    np.testing.assert_allclose(est_line.get_ydata(), estimate[1])
    assert truth_line.get_linestyle() == "--"
    np.testing.assert_allclose(truth_line.get_ydata(), truth[1])
    assert panels[0].get_xlabel() == "wavelength (nm)"


def test_spectra_use_band_index_without_wavelengths_and_hide_spare_panels():
    spectra = {"vca": np.ones((5, 7)), "nfindr": np.zeros((5, 7))}
    fig = plot_spectra_comparison(spectra)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 5 and len(fig.axes) == 8  # 2 x 4 grid, 3 hidden
    np.testing.assert_array_equal(visible[0].get_lines()[0].get_xdata(), np.arange(7))
    assert visible[0].get_xlabel() == "band"
    with pytest.raises(InputError, match="wavelengths"):
        plot_spectra_comparison(spectra, wavelengths=np.arange(6))


def test_rescaled_truth_is_the_least_squares_fit_to_the_estimate():
    truth = np.array([[1.0, 0.5, 0.25], [0.2, 1.0, 0.4]])  # max-normalised shapes
    estimate = truth * np.array([[0.3], [0.05]])
    fig = plot_endmembers(estimate, truth=truth, rescale_truth=True)
    for k, ax in enumerate(fig.axes[:2]):
        np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), estimate[k])


def test_save_figure_writes_a_png_atomically(tmp_path):
    target = tmp_path / "sub" / "maps.png"
    assert save_figure(plot_abundances(_maps(6)), target) == target
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in target.parent.iterdir()] == ["maps.png"]
