"""Movie readers (stem2d.io.readers): every format, lazy reading, metadata and bad input."""

import json
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from stem2d.io.readers import Movie, read_movie, to_angstrom

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "mos2_scilink"  # shared/ beside the checkout


def _stack(t=3, h=64, w=80, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((t, h, w)) * 200).astype(dtype)


def _assert_movie(movie, expected):
    expected = np.asarray(expected, dtype=np.float32)
    assert movie.shape == expected.shape
    assert len(movie.frames) == expected.shape[0]
    for i, frame in enumerate(movie.frames):
        assert frame.dtype == np.float32 and frame.shape == expected.shape[1:]
        np.testing.assert_array_equal(frame, expected[i])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float64])
@pytest.mark.parametrize("lazy", [False, True])
def test_npy_stack_dtypes(tmp_path, dtype, lazy):
    data = _stack(dtype=dtype)
    np.save(tmp_path / "m.npy", data)
    movie = read_movie(tmp_path / "m.npy", lazy=lazy)
    _assert_movie(movie, data)
    assert movie.pixel_size_A is None and movie.source == str(tmp_path / "m.npy")
    np.testing.assert_array_equal(movie.frames[-1], data[-1].astype(np.float32))


def test_single_image_is_one_frame(tmp_path):
    img = _stack(t=1)[0]
    np.save(tmp_path / "one.npy", img)
    _assert_movie(read_movie(tmp_path / "one.npy"), img[None])


def test_frames_sequence_protocol():
    data = _stack(t=4)
    movie = Movie.from_array(data, pixel_size_A=0.2)
    assert [f.shape for f in movie.frames[1:3]] == [(64, 80)] * 2
    np.testing.assert_array_equal(movie.frames[-1], data[3])
    with pytest.raises(IndexError, match="frame 4"):
        movie.frames[4]
    assert movie.pixel_size_A == 0.2 and movie.source == "<array>"
    with pytest.raises(ValueError, match="pixel_size_A"):
        Movie.from_array(data, pixel_size_A=-1.0)


def test_npz_first_array_key_and_pixel_size(tmp_path):
    data, other = _stack(t=2), _stack(t=1, seed=1)
    np.savez(tmp_path / "m.npz", label=np.arange(3), movie=data, other=other, pixel_size_A=0.25)
    movie = read_movie(tmp_path / "m.npz")
    _assert_movie(movie, data)
    assert movie.pixel_size_A == pytest.approx(0.25)
    _assert_movie(read_movie(tmp_path / "m.npz", dataset="other"), other)
    with pytest.raises(ValueError, match="'nope'.*m.npz|m.npz.*'nope'"):
        read_movie(tmp_path / "m.npz", dataset="nope")


@pytest.mark.parametrize("lazy", [False, True])
def test_h5_default_and_named_dataset(tmp_path, lazy):
    data, second = _stack(), _stack(t=2, seed=3)
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f.create_dataset("meta/vector", data=np.arange(5))
        dset = f.create_dataset("scan/frames", data=data)
        dset.attrs["pixel_size"] = 0.021
        dset.attrs["pixel_size_units"] = "nm"
        f.create_dataset("zz/second", data=second)
    movie = read_movie(tmp_path / "m.h5", lazy=lazy)
    _assert_movie(movie, data)
    assert movie.pixel_size_A == pytest.approx(0.21)
    movie.close()
    _assert_movie(read_movie(tmp_path / "m.h5", dataset="zz/second", lazy=lazy), second)
    with pytest.raises(ValueError, match="missing/path"):
        read_movie(tmp_path / "m.h5", dataset="missing/path")


@pytest.mark.parametrize("lazy", [False, True])
def test_tif_stack_and_imagej_pixel_size(tmp_path, lazy):
    data = _stack(dtype=np.uint16)
    # ImageJ: resolution is pixels per unit, here 1 / 0.05 nm = 0.5 A per pixel
    tifffile.imwrite(tmp_path / "m.tif", data, imagej=True, resolution=(20.0, 20.0),
                     metadata={"unit": "nm", "axes": "TYX"})
    movie = read_movie(tmp_path / "m.tif", lazy=lazy)
    _assert_movie(movie, data)
    assert movie.pixel_size_A == pytest.approx(0.5)


def test_rgb_tif_and_rgb_png_become_luminance(tmp_path):
    rgb = (np.random.default_rng(0).random((64, 72, 3)) * 255).astype(np.uint8)
    luma = (rgb.astype(np.float64) @ [0.2125, 0.7154, 0.0721]).astype(np.float32)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    _assert_movie(read_movie(tmp_path / "rgb.tif"), luma[None])
    folder = tmp_path / "pngs"
    folder.mkdir()
    iio.imwrite(folder / "a.png", np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]))
    np.testing.assert_allclose(read_movie(folder).frames[0], luma, atol=1e-4)


@pytest.mark.parametrize("lazy", [False, True])
def test_berkeley_emd_with_nm_axes(tmp_path, lazy):
    from rsciio.emd import file_writer

    data = _stack()
    axes = [dict(name="t", scale=1.0, offset=0.0, units="s", size=3, navigate=True),
            dict(name="y", scale=0.02, offset=0.0, units="nm", size=64, navigate=False),
            dict(name="x", scale=0.02, offset=0.0, units="nm", size=80, navigate=False)]
    signal = dict(data=data, axes=axes, metadata={"General": {"title": "haadf"}, "Signal": {}},
                  original_metadata={})
    file_writer(str(tmp_path / "m.emd"), signal)
    movie = read_movie(tmp_path / "m.emd", lazy=lazy)
    _assert_movie(movie, data)
    assert movie.pixel_size_A == pytest.approx(0.2)
    _assert_movie(read_movie(tmp_path / "m.emd", dataset="haadf", lazy=lazy), data)
    with pytest.raises(ValueError, match="'BF'"):
        read_movie(tmp_path / "m.emd", dataset="BF")


def test_dm4_signal_in_micrometres(tmp_path, monkeypatch):
    """rosettasciio cannot write DM files: feed read_movie a signal dict as its reader returns."""
    import rsciio.digitalmicrograph as dm

    data = _stack(t=1)[0]
    signal = {"data": data, "metadata": {"General": {"title": "HAADF"}},
              "axes": [{"index_in_array": 0, "scale": 3e-5, "units": "µm", "size": 64},
                       {"index_in_array": 1, "scale": 3e-5, "units": "µm", "size": 80}]}
    monkeypatch.setattr(dm, "file_reader", lambda filename, lazy=False: [signal])
    (tmp_path / "m.dm4").write_bytes(b"placeholder")
    movie = read_movie(tmp_path / "m.dm4")
    _assert_movie(movie, data[None])
    assert movie.pixel_size_A == pytest.approx(0.3)


@pytest.mark.parametrize("suffix", [".dm4", ".dm3", ".emd", ".tif", ".npy", ".h5", ".png"])
def test_corrupt_file_names_file(tmp_path, suffix):
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"this is not a microscope file" * 10)
    target = path
    if suffix == ".png":  # images are read from folders
        target = tmp_path
    with pytest.raises(ValueError, match="broken"):
        movie = read_movie(target)
        list(movie.frames)


@pytest.mark.parametrize("suffix", [".gif", ".mp4", ".avi"])
def test_video_is_grayscale_stack(tmp_path, suffix):
    t = np.linspace(0, 1, 4)[:, None, None]
    yy, xx = np.mgrid[0:64, 0:80]
    frames = (40 + 150 * t * (np.sin(xx / 6.0) * np.cos(yy / 9.0) + 1) / 2).astype(np.uint8)
    rgb = np.repeat(frames[..., None], 3, axis=-1)
    kwargs = {} if suffix == ".gif" else {"fps": 10}
    iio.imwrite(tmp_path / f"m{suffix}", rgb, **kwargs)
    movie = read_movie(tmp_path / f"m{suffix}")
    assert movie.shape == (4, 64, 80)
    tol = 1 if suffix == ".gif" else 12  # lossy codecs
    for got, want in zip(movie.frames, frames):
        assert got.dtype == np.float32
        assert np.abs(got - want).mean() < tol


@pytest.mark.parametrize("lazy", [False, True])
def test_folder_of_images_sorted(tmp_path, lazy):
    data = _stack(t=3, dtype=np.uint8)
    names = ["a_0.png", "a_1.tif", "a_2.png"]
    for name, frame in zip(names[::-1], data[::-1]):  # written out of order
        if name.endswith(".tif"):
            tifffile.imwrite(tmp_path / name, frame)
        else:
            iio.imwrite(tmp_path / name, frame)
    (tmp_path / "notes.txt").write_text("ignored")
    _assert_movie(read_movie(tmp_path, lazy=lazy), data)


def test_folder_shape_mismatch_and_empty(tmp_path):
    iio.imwrite(tmp_path / "a.png", np.zeros((64, 64), np.uint8))
    iio.imwrite(tmp_path / "b.png", np.zeros((64, 96), np.uint8))
    with pytest.raises(ValueError, match="b.png"):
        read_movie(tmp_path)
    lazy = read_movie(tmp_path, lazy=True)  # only the accessed frame is checked
    assert lazy.frames[0].shape == (64, 64)
    with pytest.raises(ValueError, match="b.png"):
        lazy.frames[1]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no .*images"):
        read_movie(empty)


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.npy"):
        read_movie(tmp_path / "nothere.npy")
    (tmp_path / "x.xyz").write_text("?")
    with pytest.raises(ValueError, match=r"x\.xyz.*'\.xyz'"):
        read_movie(tmp_path / "x.xyz")
    np.save(tmp_path / "m.npy", _stack())
    with pytest.raises(ValueError, match="dataset"):
        read_movie(tmp_path / "m.npy", dataset="frames")


@pytest.mark.parametrize(
    "shape, match",
    [((2, 3, 64, 64), "4D"), ((0, 64, 64), "empty"), ((3, 32, 64), "smaller than"),
     ((40, 40), "smaller than")],
)
def test_bad_shapes(tmp_path, shape, match):
    np.save(tmp_path / "bad.npy", np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match=match):
        read_movie(tmp_path / "bad.npy")


def test_rgb_stack_of_npy_is_converted(tmp_path):
    rgb = (np.random.default_rng(2).random((2, 64, 64, 4)) * 255).astype(np.uint8)
    np.save(tmp_path / "rgba.npy", rgb)
    want = (rgb[..., :3].astype(np.float64) @ [0.2125, 0.7154, 0.0721]).astype(np.float32)
    _assert_movie(read_movie(tmp_path / "rgba.npy"), want)


def test_nan_frame_named_eager_and_on_access_when_lazy(tmp_path):
    data = _stack(t=4)
    data[2, 10, 10] = np.nan
    np.save(tmp_path / "nan.npy", data)
    with pytest.raises(ValueError, match="frame 2"):
        read_movie(tmp_path / "nan.npy")
    lazy = read_movie(tmp_path / "nan.npy", lazy=True)
    assert np.isfinite(lazy.frames[1]).all()
    with pytest.raises(ValueError, match="nan.npy: frame 2"):
        lazy.frames[2]


@pytest.mark.parametrize("n_frames", [4, 5])  # tifffile stores 4 planes as one page, 5 as pages
def test_lazy_tif_reports_inf_frame_on_access(tmp_path, n_frames):
    data = _stack(t=n_frames)
    data[2, 10, 10] = np.inf
    tifffile.imwrite(tmp_path / "inf.tif", data)
    lazy = read_movie(tmp_path / "inf.tif", lazy=True)
    np.testing.assert_array_equal(lazy.frames[1], data[1])
    with pytest.raises(ValueError, match="inf.tif: frame 2"):
        lazy.frames[2 - n_frames]
    lazy.close()


def test_sidecar_json_field_of_view_overrides(tmp_path):
    data = _stack(t=1, h=64, w=64)
    np.savez(tmp_path / "m.npz", frames=data, pixel_size_A=0.5)
    meta = {"experimental_details": {"spatial_info": {
        "field_of_view_x": 1.28, "field_of_view_y": 1.28, "field_of_view_units": "nm"}}}
    (tmp_path / "m.json").write_text(json.dumps(meta))
    assert read_movie(tmp_path / "m.npz").pixel_size_A == pytest.approx(12.8 / 64)
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ValueError, match="m.json"):
        read_movie(tmp_path / "m.npz")


@pytest.mark.parametrize(
    "value, unit, expected",
    [(0.2, "nm", 2.0), (20.0, "pm", 0.2), (1e-4, "µm", 1.0), (1e-4, "um", 1.0),
     (0.3, "Å", 0.3), (0.3, "A", 0.3), (1.0, "px", None), (1.0, None, None), (2.0, "1/nm", None)],
)
def test_to_angstrom(value, unit, expected):
    got = to_angstrom(value, unit)
    assert got == (None if expected is None else pytest.approx(expected))


@pytest.mark.skipif(not REAL.is_dir(), reason="real MoS2 frames not present")
def test_real_frames_load_with_sidecar_pixel_size():
    files = sorted(REAL.glob("*.npy"))
    assert files
    for path in files:
        movie = read_movie(path)
        assert movie.shape == (1, 512, 512)
        fov_nm = json.loads(path.with_suffix(".json").read_text())[
            "experimental_details"]["spatial_info"]["field_of_view_x"]
        assert movie.pixel_size_A == pytest.approx(fov_nm * 10 / 512)
        assert np.isfinite(movie.frames[0]).all()
