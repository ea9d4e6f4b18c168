import imageio.v2 as imageio
import numpy as np
import pytest

from stem2d.predict.video import OverlayMovieWriter


def _frames(n, h=64, w=96):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_writer_writes_mp4_and_gif(tmp_path):
    with OverlayMovieWriter(tmp_path, fps=5, gif_max_px=48) as w:
        for f in _frames(4):
            w.append(f)
    mp4, gif = tmp_path / "overlay.mp4", tmp_path / "overlay.gif"
    assert mp4.exists() and gif.exists()
    assert len(list(imageio.mimread(gif))) == 4
    reader = imageio.get_reader(mp4)
    frames = list(reader.iter_data())
    reader.close()
    assert len(frames) == 4 and frames[0].shape == (64, 96, 3)
    assert not list(tmp_path.glob(".*partial*"))


def test_writer_leaves_nothing_complete_looking_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with OverlayMovieWriter(tmp_path) as w:
            w.append(_frames(1)[0])
            raise RuntimeError("crash mid-run")
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_wrong_dtype(tmp_path):
    with OverlayMovieWriter(tmp_path) as w:
        with pytest.raises(ValueError, match="uint8"):
            w.append(np.zeros((8, 8, 3), dtype=np.float32))
        w.append(_frames(1, 8, 8)[0])
