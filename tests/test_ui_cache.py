"""ui.cache's readers of files a run directory holds, which may come from elsewhere."""

from __future__ import annotations

from PIL import Image

from ui import cache


def test_a_grid_from_elsewhere_is_never_enlarged_past_the_budget(tmp_path):
    tall = tmp_path / "step_0000001.png"
    Image.new("L", (1, 2000)).save(tall)          # enlarged to 480 px wide: 460 megapixels
    grid = cache.sample_grid(str(tall), 0)
    assert grid.size <= cache.GRID_MAX_PX and grid.shape[1] >= 1
    ours = tmp_path / "step_0000002.png"
    Image.new("L", (64, 64)).save(ours)           # a grid of ours is enlarged as before
    assert cache.sample_grid(str(ours), 0).shape == (512, 512)


def test_a_huge_grid_file_is_not_carried_into_the_page(tmp_path):
    huge = tmp_path / "step_0000003.png"
    huge.write_bytes(b"\\x89PNG" + bytes(cache.FIGURE_MAX_BYTES))
    figure = cache.sample_figure(str(huge), 0, "Fixed-z samples, step 3")
    assert "too large to show" in figure and "base64" not in figure and len(figure) < 1000
