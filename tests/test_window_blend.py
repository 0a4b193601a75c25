"""core/window_blend.py: neighbouring windows blended across their common edges, each pixel given out once."""

from __future__ import annotations

import numpy as np
import pytest
from sentinel_densify.core.grid import Grid, tiles
from sentinel_densify.core.tiling import edge_ramp
from sentinel_densify.core.window_blend import WindowBlender

H, W, SIZE, HALO = 45, 70, 16, 6


def _grid(h: int = H, w: int = W) -> Grid:
    from affine import Affine

    return Grid("", Affine(10, 0, 0, 0, -10, 0), w, h)


def _assemble(predict, blend: int, size: int = SIZE, halo: int = HALO, h: int = H, w: int = W, shift: int = 0,
              regions: list | None = None):
    """Run every window of a grid through a WindowBlender; the assembled (C, h, w) image and how many times each
    pixel was given out (and each region given out, in `regions`)."""
    blender = WindowBlender(h, w, blend)
    out, given = None, np.zeros((h, w), int)
    for t in tiles(_grid(h, w), size, halo=halo, shift=shift):
        row, col, done = blender.add(t, predict(t))
        if regions is not None:
            regions.append((row, col, *done.shape[1:]))
        if out is None:
            out = np.full((done.shape[0], h, w), np.nan, np.float32)
        out[:, row:row + done.shape[1], col:col + done.shape[2]] = done
        given[row:row + done.shape[1], col:col + done.shape[2]] += 1
    return out, given


def _field(t, channels: int = 3) -> np.ndarray:
    """A smooth field, the same in every window (as a model would predict where windows agree)."""
    r, c = np.mgrid[t.row0:t.row0 + t.height0, t.col0:t.col0 + t.width0].astype(np.float32)
    return np.stack([r + 2 * c + 100 * k for k in range(channels)])


def _constant(t) -> np.ndarray:
    """Each window predicts its own number everywhere (windows that disagree)."""
    return np.full((1, t.height0, t.width0), 1000.0 * (t.row // SIZE) + t.col // SIZE, np.float32)


def test_the_ramp_sums_to_one_across_an_edge():
    for n in (2, 8, 16):
        r = edge_ramp(n)
        assert np.all(np.diff(r) > 0) and 0 < r[0] < 1 / n and 1 - 1 / n < r[-1] < 1
        np.testing.assert_allclose(r + r[::-1], 1, atol=1e-6)


@pytest.mark.parametrize("shift", [0, 4])
@pytest.mark.parametrize(("h", "w"), [(H, W), (48, 64), (33, 18), (16, 16), (21, 37)])
def test_every_pixel_is_given_once_and_agreeing_windows_are_unchanged(h, w, shift):
    """Whatever the grid (a last tile narrower than the blend, one window, tiles that fit exactly) and the tiles'
    shift, each pixel comes out exactly once; where all windows predict the same, blending changes nothing."""
    out, given = _assemble(_field, blend=4, h=h, w=w, shift=shift)
    assert np.array_equal(given, np.ones((h, w), int))
    r, c = np.mgrid[:h, :w]
    np.testing.assert_allclose(out, np.stack([r + 2 * c + 100 * k for k in range(3)]), rtol=0, atol=1e-3)


def test_disagreeing_windows_meet_in_a_smooth_ramp():
    """Two windows that disagree by 1 (columns) or 1000 (rows): the tiles keep their own value away from the
    edges, and across each edge the value moves monotonically from one to the other over 2 x blend px, with no
    step larger than the ramp's steepest."""
    blend = 4
    out, _ = _assemble(_constant, blend)
    plain, _ = _assemble(_constant, 0)
    line = out[0, 2, :]  # a row far from the row edges: columns cross the edges at 16, 32, 48, 64
    own = plain[0, 2, :]
    far = np.ones(W, bool)
    for e in range(SIZE, W, SIZE):
        far[e - blend:e + blend] = False
    assert np.array_equal(line[far], own[far])
    assert np.all(np.diff(line) >= 0) and np.all(np.diff(line) < 0.25)  # steps of 1 spread over 8 px
    assert np.max(np.abs(np.diff(own))) == 1  # without blending: a step at each edge
    column = out[0, :, 2]
    assert np.all(np.diff(column) >= 0) and np.max(np.diff(column)) < 250 and column[-1] == 2000


def test_a_window_without_a_value_leaves_the_pixel_to_its_neighbours():
    """NaN in one window (no clear observation in its view) is not blended: the other windows' value stands; a
    pixel no window has stays NaN."""

    def predict(t):
        v = _field(t, 2)
        if (t.row, t.col) == (0, 0):
            v[:, :, -6:] = np.nan  # its right halo, and 2 px of its tile, have no value
        if (t.row, t.col) == (16, 16):
            v[:, 10:13, 10:13] = np.nan  # no window sees these (inside the tile, away from any edge)
        return v

    out, _ = _assemble(predict, blend=4)
    r, c = np.mgrid[:H, :W]
    expect = np.stack([r + 2 * c + 100 * k for k in range(2)]).astype(np.float32)
    hole = np.zeros((H, W), bool)
    hole[20:23, 20:23] = True
    assert np.isnan(out[:, hole]).all()
    np.testing.assert_allclose(out[:, ~hole], expect[:, ~hole], atol=1e-3)
    assert np.isfinite(out[:, 14:16, :16]).all()  # taken from the window to the right in the blended band


def test_blend_zero_gives_each_tile_itself():
    out, given = _assemble(_constant, 0)
    assert np.array_equal(given, np.ones((H, W), int))
    assert out[0, 20, 40] == 1000 + 2 and out[0, 15, 15] == 0 and out[0, 16, 16] == 1001


def test_windows_out_of_order_or_without_halo_are_refused():
    blender = WindowBlender(H, W, 4)
    ts = list(tiles(_grid(), SIZE, halo=HALO))
    with pytest.raises(ValueError, match="out of order"):
        blender.add(ts[1], _field(ts[1]))
    thin = list(tiles(_grid(), SIZE, halo=2))
    blender = WindowBlender(H, W, 4)
    with pytest.raises(ValueError, match="less than 4 px of halo"):
        blender.add(thin[0], _field(thin[0]))


def test_tiles_shifted_by_the_blend_give_out_whole_tiles_of_the_size_grid():
    """With tiles' edges shifted by the blend (as the engine does), the pixels given out are [k * size, (k + 1) *
    size) on both axes (whole blocks of an output whose block size divides the tile size), the last ones to the
    grid's edge; without the shift they straddle that grid."""
    regions: list = []
    _assemble(_field, blend=4, shift=4, regions=regions)
    assert all(r % SIZE == 0 and c % SIZE == 0 for r, c, _, _ in regions)
    assert all(h == min(SIZE, H - r) and w == min(SIZE, W - c) for r, c, h, w in regions)
    assert len(regions) == -(-H // SIZE) * -(-W // SIZE)
    plain: list = []
    _assemble(_field, blend=4, regions=plain)
    assert any(r % SIZE or c % SIZE for r, c, _, _ in plain)
