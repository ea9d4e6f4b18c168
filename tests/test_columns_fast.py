"""The vectorised helpers of stem2d.lattice.columns and stem2d.predict.regions give the results of the
straightforward versions they replaced (kept here as references, issue #16)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage, spatial

from stem2d.lattice import _patches as P
from stem2d.lattice import columns as C
from stem2d.materials import get_material
from stem2d.predict import regions as R
from stem2d.sim.imaging import Acquisition, Probe, acquire, render_haadf
from stem2d.sim.lattice import mx2_columns


def _local_amplitude_ref(demod, sigma_px, step):
    h, w = demod.shape
    hb, wb = -(-h // step), -(-w // step)
    padded = np.zeros((hb * step, wb * step), dtype=complex)
    padded[:h, :w] = demod
    inside = np.zeros(padded.shape)
    inside[:h, :w] = 1.0
    blocks = padded.reshape(hb, step, wb, step).sum(axis=(1, 3))
    weight = inside.reshape(hb, step, wb, step).sum(axis=(1, 3))
    s = sigma_px / step
    norm = ndimage.gaussian_filter(weight, s, mode="constant")
    return (ndimage.gaussian_filter(blocks.real, s, mode="constant")
            + 1j * ndimage.gaussian_filter(blocks.imag, s, mode="constant")) / np.maximum(norm, 1e-12)


def _upsample_ref(a, shape, step):
    coords = np.meshgrid((np.arange(shape[0]) + 0.5) / step - 0.5, (np.arange(shape[1]) + 0.5) / step - 0.5,
                         indexing="ij")
    return ndimage.map_coordinates(np.asarray(a, dtype=np.float64), coords, order=1, mode="nearest")


def test_demodulation_and_upsampling_match_the_direct_versions(monkeypatch):
    rng = np.random.default_rng(0)
    img = rng.normal(size=(61, 47))
    rows, cols = np.arange(61)[:, None], np.arange(47)[None, :]
    g = np.array([0.083, -0.061])
    for step in (1, 3, 4):
        demod = C._demodulator(img, step)
        fast = C._block_smoother(demod.weight, 5.0, step)(demod([g])[0])
        ref = _local_amplitude_ref((img - img.mean()) * np.exp(-2j * np.pi * (g[0] * rows + g[1] * cols)), 5.0, step)
        np.testing.assert_allclose(fast, ref, rtol=1e-10, atol=1e-12)
        # in chunks of a few block rows (the last one partial): the same block sums
        monkeypatch.setattr(C, "_DEMODULATE_CHUNK_PX", 5 * step * step * -(-47 // step))
        chunked = C._demodulator(img, step)([g, 2 * g])
        monkeypatch.undo()
        np.testing.assert_array_equal(chunked[0], demod([g])[0])
        np.testing.assert_allclose(chunked[1], demod([2 * g])[0], rtol=1e-13, atol=1e-13)
        coarse = rng.normal(size=fast.shape)
        np.testing.assert_allclose(C._upsampler(img.shape, step)(coarse), _upsample_ref(coarse, img.shape, step),
                                   rtol=1e-12, atol=1e-12)
        # with a plane added (folded into the block grid): the interpolation plus the plane
        plane = (0.31, -0.17)
        with_plane = C._upsampler(img.shape, step)(coarse, plane=plane)
        np.testing.assert_allclose(with_plane, _upsample_ref(coarse, img.shape, step) + plane[0] * rows + plane[1] * cols,
                                   rtol=1e-12, atol=1e-12)
        band = slice(5, 17)
        np.testing.assert_allclose(C._upsampler(img.shape, step)(coarse, rows=band, plane=plane), with_plane[band],
                                   rtol=1e-13, atol=1e-13)


def test_bilinear_matches_map_coordinates():
    rng = np.random.default_rng(4)
    for shape in ((37, 53), (2, 9), (16, 16)):
        img = rng.normal(size=shape)
        pos = np.array(shape) * rng.uniform(0, 1, (200, 2)) + rng.uniform(-1.5, 1.5, (200, 2))
        pos[:4] = [[0, 0], [shape[0] - 1, shape[1] - 1], [shape[0] - 1, 0.5], [-3.0, shape[1] + 2.0]]  # edges, beyond
        ref = ndimage.map_coordinates(img, pos.T, order=1, mode="nearest")
        np.testing.assert_allclose(C._bilinear(img, pos), ref, rtol=0, atol=1e-12)


def test_patches_and_disks_match_the_clipped_gather():
    rng = np.random.default_rng(1)
    img = rng.normal(size=(40, 50))
    centres = np.concatenate([rng.uniform(0, 39, (30, 1)), rng.uniform(0, 49, (30, 1))], axis=1)
    centres[:3] = [[0.2, 0.4], [39.0, 49.0], [1.6, 48.3]]  # patches over the edges
    for radius, step in ((2.5, 1), (10.6, 2)):
        dy, dx = P.patch_grid(radius, step)
        base = np.rint(centres).astype(int)
        rr = np.clip(base[:, :1] + dy, 0, 39)
        cc = np.clip(base[:, 1:] + dx, 0, 49)
        np.testing.assert_array_equal(P.patch_values(img, centres, radius, step), img[rr, cc])
    radius = 2.5
    dy, dx = P.patch_grid(radius)
    base = np.rint(centres).astype(int)
    rr = np.clip(base[:, :1] + dy, 0, 39)
    cc = np.clip(base[:, 1:] + dx, 0, 49)
    w = np.clip(radius + 0.5 - np.hypot(rr - centres[:, :1], cc - centres[:, 1:]), 0, 1)
    # more than the patch half-width (4 px) from the edges the disk stencil drops only zero weights
    # (nearer, the full patch counted clamped edge pixels again)
    inner = (base >= 4).all(axis=1) & (base[:, 0] <= 35) & (base[:, 1] <= 45)
    assert inner.sum() > 10
    ref = (img[rr, cc] * w).sum(axis=1) / w.sum(axis=1)
    np.testing.assert_allclose(P.disk_means(img, centres, radius)[inner], ref[inner], rtol=1e-12)


def test_sites_match_the_unique_based_grouping():
    rng = np.random.default_rng(2)
    h, w = 80, 90
    basis = np.array([[0.09, 0.03], [-0.02, 0.1]])
    r, c = np.indices((h, w))
    frac = np.stack([basis[0, 0] * r + basis[0, 1] * c, basis[1, 0] * r + basis[1, 1] * c]) + 0.01 * rng.normal(size=(2, h, w))
    inv = np.linalg.inv(basis)
    offset = np.array([1 / 3, 2 / 3])
    pos, ij = C._sites(frac, offset[None], inv, 4)[0]
    d = frac - offset[:, None, None]
    n = np.rint(d)
    e = d - n
    near = (np.abs(e) < 0.25).all(axis=0)
    key = {}
    for y, x in zip(*np.nonzero(near)):
        est = np.array([y, x]) - inv @ e[:, y, x]
        key.setdefault((int(n[0, y, x]), int(n[1, y, x])), []).append(est)
    ref = {k: np.mean(v, axis=0) for k, v in key.items() if len(v) >= 3}
    ref = {k: p for k, p in ref.items() if 4 <= p[0] <= h - 5 and 4 <= p[1] <= w - 5}
    assert len(pos) == len(ref) > 20
    for p, (i, j) in zip(pos, ij):
        np.testing.assert_allclose(p, ref[(i, j)], rtol=1e-12)


def test_paint_matches_the_query_of_every_pixel():
    rng = np.random.default_rng(3)
    shape = (120, 100)
    pos = rng.uniform(0, 100, (400, 2))
    region = np.where(rng.random(400) < 0.05, rng.integers(1, 5, 400), 0).astype(np.uint8)
    reach = 9.0
    for r in (reach, 3.0):
        painted = R._paint(region, pos, shape, reach_px=r)
        step = max(1, int(r / 4))
        rows = np.arange(0, shape[0], step) + (step - 1) / 2
        cols = np.arange(0, shape[1], step) + (step - 1) / 2
        grid = np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).reshape(-1, 2)
        d, idx = spatial.cKDTree(pos).query(grid)
        coarse = np.where(d <= r, region[idx], 0).astype(np.uint8).reshape(len(rows), len(cols))
        full = np.repeat(np.repeat(coarse, step, axis=0), step, axis=1)[:shape[0], :shape[1]]
        ref = ndimage.median_filter(full, size=3) if step == 1 else full
        np.testing.assert_array_equal(painted, ref)
        assert painted.any()


def test_quantification_in_small_chunks_equals_one_chunk(monkeypatch):
    ws2 = get_material("WS2")
    cols = mx2_columns(ws2, extent_A=(36.0, 39.0), rotation_deg=11.0)
    clean = render_haadf(cols, shape=(120, 130), pixel_size_A=0.3, probe=Probe())
    frame = acquire(clean, pixel_size_A=0.3, acq=Acquisition(dose_e_per_A2=5e4), rng=4)
    whole = C.quantify_columns(frame, material=ws2, pixel_size_A=0.3)
    bands = P.row_bands
    monkeypatch.setattr(P, "CHUNK", 7)
    monkeypatch.setattr(P, "row_bands", lambda n: bands(n, pixels=900))
    chunked = C.quantify_columns(frame, material=ws2, pixel_size_A=0.3)
    assert len(whole.table) > 300
    assert (whole.table["sublattice"] == chunked.table["sublattice"]).all()
    num = [c for c in whole.table.columns if c != "sublattice"]
    np.testing.assert_allclose(chunked.table[num].to_numpy(float), whole.table[num].to_numpy(float),
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(chunked.lattice.motif, whole.lattice.motif, rtol=1e-12)


def test_float32_frames_give_the_numbers_of_their_float64_copy():
    ws2 = get_material("WS2")
    cols = mx2_columns(ws2, extent_A=(36.0, 39.0), rotation_deg=11.0)
    clean = render_haadf(cols, shape=(120, 130), pixel_size_A=0.3, probe=Probe())
    frame = acquire(clean, pixel_size_A=0.3, acq=Acquisition(dose_e_per_A2=5e4), rng=4).astype(np.float32)
    single = C.quantify_columns(frame, material=ws2, pixel_size_A=0.3)
    double = C.quantify_columns(frame.astype(np.float64), material=ws2, pixel_size_A=0.3)
    assert len(single.table) > 300
    assert single.table.equals(double.table)


def test_column_cache_worker_gives_the_synchronous_result(monkeypatch):
    from stem2d.predict.column_candidates import ColumnCache

    ws2 = get_material("WS2")
    cols = mx2_columns(ws2, extent_A=(36.0, 39.0), rotation_deg=11.0)
    frames = [acquire(render_haadf(cols, shape=(120, 130), pixel_size_A=0.3, probe=Probe()), pixel_size_A=0.3,
                      acq=Acquisition(dose_e_per_A2=5e4), rng=k) for k in range(2)]
    # each frame's lattice fit starts from the basis of the frame handed to the cache before it
    ref, hint = [], None
    for f in frames:
        q = C.quantify_columns(f, material=ws2, pixel_size_A=0.3, basis_hint=hint)
        ref.append(q.table)
        hint = q.lattice.basis
    searches = []
    search = C._reciprocal_lattice
    monkeypatch.setattr(C, "_reciprocal_lattice", lambda *a, **k: searches.append(1) or search(*a, **k))
    cache = ColumnCache(material=ws2, pixel_size_A=0.3, size=2)
    try:
        for f in frames:
            cache.start(f)  # both queued on the worker, read back in order
        for f, want in zip(frames, ref):
            got = cache(f)
            assert got is cache(f)  # computed once
            assert got.table.equals(want)
    finally:
        cache.close()
    assert cache(frames[0]).table.equals(ref[0])  # still served after the worker stopped
    assert len(searches) == 1  # the second frame started from the first one's basis


def test_large_frames_are_quantified_when_asked_not_in_the_worker(monkeypatch):
    from stem2d.predict import column_candidates as CC

    monkeypatch.setattr(CC, "MAX_PARALLEL_PX", 100)
    cache = CC.ColumnCache(material=get_material("WS2"), pixel_size_A=0.3)
    cache.start(np.zeros((20, 20), np.float32))
    assert cache._pool is None and cache._entries == []  # nothing started: no second frame-sized peak


def test_strided_unwrap_equals_the_full_unwrap():
    from skimage.restoration import unwrap_phase

    rng = np.random.default_rng(5)
    rows, cols = np.indices((90, 110))
    # a smooth phase of many turns: a ramp, a bend and a slow random field
    slow = ndimage.gaussian_filter(rng.normal(size=(90, 110)), 12.0)
    # up to 0.9 rad per sample (the geometric phase of a frame stretched by 12 % changes by < 0.2)
    phase = 0.2 * rows - 0.12 * cols + 3e-4 * (cols - 50) ** 2 + 12 * slow / np.abs(slow).max()
    wrapped = np.angle(np.exp(1j * phase))
    fast, full = C._unwrap(wrapped), unwrap_phase(wrapped)
    turns = (fast - full) / (2 * np.pi)
    np.testing.assert_allclose(turns, np.round(turns[0, 0]), atol=1e-9)  # one constant number of turns
    np.testing.assert_allclose(fast - fast[0, 0], phase - phase[0, 0], atol=1e-9)


def _kd_nearest(tree: spatial.cKDTree, pos: np.ndarray, k: int, *, skip_self: bool = False) -> np.ndarray:
    """The reference: indices into ``tree``'s points of the k nearest to each of ``pos``;
    ``skip_self``: one more is asked for, and a point at distance 0 (the position itself) is
    dropped, else the farthest."""
    k_eff = min(k + int(skip_self), tree.n)
    dist, idx = tree.query(pos, k=k_eff)
    idx, dist = idx.reshape(len(pos), -1), dist.reshape(len(pos), -1)
    if skip_self and idx.shape[1] > 1:
        idx = np.where(dist[:, :1] < 1e-6, idx[:, 1:], idx[:, :-1])
    return idx


def test_neighbours_by_index_are_the_kd_tree_sets():
    from stem2d.lattice import _neighbours as N

    ws2 = get_material("WS2")
    cols = mx2_columns(ws2, extent_A=(75.0, 66.0), rotation_deg=23.0)
    frame = acquire(render_haadf(cols, shape=(250, 220), pixel_size_A=0.3, probe=Probe()), pixel_size_A=0.3,
                    acq=Acquisition(dose_e_per_A2=5e4, jitter_px=0.3), rng=6)
    lat = C.fit_lattice(frame, material=ws2, pixel_size_A=0.3)
    inv = np.linalg.inv(lat.basis)
    sites = C._sites(lat.frac, lat.offsets, inv, 4)
    pos = np.concatenate([s[0] for s in sites])
    ij = np.concatenate([s[1] for s in sites])
    sub = np.concatenate([np.full(len(s[0]), k) for k, s in enumerate(sites)])
    assert N.continuous(lat.frac, lat.basis)
    near = N.IndexNeighbours(pos, ij, sub, lat.offsets, inv, by_index=True)
    usable = np.random.default_rng(7).random(len(pos)) > 0.02  # vacancies are no references
    answered = []
    by_index = near._by_index
    near._by_index = lambda *a: answered.append(by_index(*a)[0].mean()) or by_index(*a)
    for ref, query, k, self_match in ((2, sub != 2, 3, False), (2, sub == 2, 6, True), (0, sub == 0, 18, True),
                                      (1, sub == 1, 18, True), (1, sub == 2, 18, False)):
        q = np.flatnonzero(query)
        got = near.nearest(ref, q, k, usable=usable, self_match=self_match)
        use = np.flatnonzero((sub == ref) & usable)
        want = use[_kd_nearest(spatial.cKDTree(pos[use]), pos[q], k, skip_self=self_match)]
        np.testing.assert_array_equal(np.sort(got, axis=1), np.sort(want, axis=1))
    assert min(answered) > 0.3  # most sites answered by index (the rest: frame edges, vacancies)
    jumped = lat.frac.copy()
    jumped[0, :, 90:] += 1.0  # a 2 pi jump of the phase: index neighbours are no longer space neighbours
    assert not N.continuous(jumped, lat.basis)


def test_column_cache_after_close_does_not_wait_for_cancelled_frames(monkeypatch):
    import threading
    import time

    from stem2d.predict import column_candidates as CC

    ws2 = get_material("WS2")
    cols = mx2_columns(ws2, extent_A=(36.0, 39.0), rotation_deg=11.0)
    frames = [acquire(render_haadf(cols, shape=(120, 130), pixel_size_A=0.3, probe=Probe()), pixel_size_A=0.3,
                      acq=Acquisition(dose_e_per_A2=5e4), rng=k) for k in range(4)]
    quantify = CC.quantify_columns

    def slow(frame, **kw):
        time.sleep(0.3)  # the worker is still on the first frame when the cache closes
        return quantify(frame, **kw)

    monkeypatch.setattr(CC, "quantify_columns", slow)
    cache = CC.ColumnCache(material=ws2, pixel_size_A=0.3, size=4)
    for f in frames[:3]:
        cache.start(f)
    cache.close()  # frames 2 and 3 are cancelled: the next frame's hint must not wait for them
    assert [f.cancelled() for _, f in cache._entries] == [False, True, True]
    done = []
    worker = threading.Thread(target=lambda: done.append(cache(frames[3])))
    worker.start()
    worker.join(timeout=60)
    assert done and done[0] is not None
    # the hint it got is the first frame's basis, handed on by the cancelled frames
    first = cache(frames[0])
    again = quantify(frames[3], material=ws2, pixel_size_A=0.3, basis_hint=first.lattice.basis)
    assert done[0].table.equals(again.table)


def test_fortran_ordered_frames_give_the_same_patches():
    """np.pad keeps a Fortran-ordered frame Fortran-ordered; the flat-index gather must not see it."""
    from stem2d.lattice import _patches as P

    rng = np.random.default_rng(0)
    img = rng.random((40, 50))
    centres = rng.uniform(0, 40, (30, 2))
    for frame in (img, np.asfortranarray(img)):
        padded, _ = P.padded_for(frame, *P.disk_stencil(2.5))
        assert padded.flags.c_contiguous
    assert np.array_equal(P.disk_means(np.asfortranarray(img), centres, 2.5), P.disk_means(img, centres, 2.5))


def test_resampled_frames_are_c_ordered():
    from stem2d.lattice.scale import resample

    out = resample(np.random.default_rng(1).random((64, 80)).astype(np.float32), from_pixel_size_A=0.2354)
    assert out.flags.c_contiguous


def _refine_ref(image, centres, bg, radius, max_shift, iterations=2):
    """Centre of mass of the background-subtracted disk (clamped to the frame), site by site."""
    dy, dx = P.patch_grid(radius)
    inside = np.hypot(dy, dx) <= radius
    dy, dx = dy[inside], dx[inside]
    out = centres.copy()
    for n, (c, b) in enumerate(zip(centres, bg)):
        p = c.copy()
        for _ in range(iterations):
            rr = np.clip(int(np.rint(p[0])) + dy, 0, image.shape[0] - 1)
            cc = np.clip(int(np.rint(p[1])) + dx, 0, image.shape[1] - 1)
            wgt = np.clip(image[rr, cc] - b, 0, None)
            new = np.array([(wgt * rr).sum(), (wgt * cc).sum()]) / wgt.sum() if wgt.sum() > 0 else p
            p = new if np.hypot(*(new - c)) <= max_shift else c
        out[n] = p
    return out


def test_refine_and_fit_quality_match_the_site_by_site_versions():
    rng = np.random.default_rng(5)
    img = ndimage.gaussian_filter(rng.normal(size=(60, 70)), 1.5) + 1.0
    centres = np.concatenate([rng.uniform(0, 59, (300, 1)), rng.uniform(0, 69, (300, 1))], axis=1)
    centres[:3] = [[0.3, 0.2], [59.0, 69.0], [1.4, 68.6]]  # disks over the edges
    bg = rng.uniform(0.5, 1.0, 300)
    for part in (slice(0, 300), slice(3, 300)):  # with and without edge sites in the chunk
        np.testing.assert_allclose(P.refine(img, centres[part], bg[part], 2.3, 2.0),
                                   _refine_ref(img, centres[part], bg[part], 2.3, 2.0), rtol=1e-12, atol=1e-12)
    sub = rng.integers(0, 2, 300)
    quality = P.fit_quality(img, centres, sub, 6.5, step=2)
    for k in (0, 1):
        idx = np.flatnonzero(sub == k)
        t = np.median(P.patch_values(img, centres[idx[::1]], 6.5, 2), axis=0)
        t -= t.mean()
        v = P.patch_values(img, centres[idx], 6.5, 2)
        v -= v.mean(axis=1, keepdims=True)
        ref = v @ t / (np.sqrt((v * v).sum(axis=1) * (t * t).sum()) + 1e-12)
        np.testing.assert_allclose(quality[idx], ref, rtol=1e-10, atol=1e-12)
    # from the smoothed frame made edge-padded (more than either needs): the same numbers
    raw = rng.normal(size=(60, 70)) + 1.0
    smooth, padded = P.smoothed_padded(raw, 1.5, 9)
    np.testing.assert_array_equal(smooth, ndimage.gaussian_filter(raw, 1.5))
    np.testing.assert_array_equal(padded, np.pad(smooth, 9, mode="edge"))
    np.testing.assert_array_equal(P.refine(smooth, centres, bg, 2.3, 2.0, padded=(padded, 9)),
                                  P.refine(smooth, centres, bg, 2.3, 2.0))
    np.testing.assert_array_equal(P.fit_quality(smooth, centres, sub, 6.5, step=2, padded=(padded, 9)),
                                  P.fit_quality(smooth, centres, sub, 6.5, step=2))


def test_kd_fallback_keeps_the_balanced_trees_choice_among_ties():
    from stem2d.lattice import _neighbours as N

    # a perfect square grid: equal distances everywhere, so the k nearest are often a choice
    r, c = np.mgrid[0:30, 0:30]
    pos = np.stack([r.ravel(), c.ravel()], axis=1).astype(float)
    sub = np.zeros(len(pos), int)
    near = N.IndexNeighbours(pos, np.zeros((len(pos), 2), int), sub, np.zeros((1, 2)), np.eye(2), by_index=False)
    usable = np.random.default_rng(9).random(len(pos)) > 0.1
    use = np.flatnonzero(usable)
    query = np.arange(0, len(pos), 7)
    for k, self_match in ((4, False), (6, True), (9, True), (12, False)):
        got = near.nearest(0, query, k, usable=usable, self_match=self_match)
        want = use[_kd_nearest(spatial.cKDTree(pos[use]), pos[query], k, skip_self=self_match)]
        np.testing.assert_array_equal(np.sort(got, axis=1), np.sort(want, axis=1))
