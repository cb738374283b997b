import numpy as np
import pytest
import torch
from PIL import Image

from dynastream.train.data import (
    CropDataset,
    DataError,
    StepBatchSampler,
    batches,
    find_images,
    load_style_image,
    open_rgb,
)


@pytest.fixture
def photo_folder(tmp_path):
    """Images in every supported format and mode, nested, plus files that must be ignored or skipped."""
    root = tmp_path / "photos"
    (root / "a" / "b").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    rgb.save(root / "rgb.jpg")
    rgb.convert("L").save(root / "a" / "grey.png")
    rgb.convert("CMYK").save(root / "a" / "cmyk.JPG")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(0)                                          # fully transparent: must come out white
    rgba.save(root / "a" / "b" / "alpha.png")
    rgb.save(root / "a" / "b" / "pic.webp")
    rgb.save(root / "pic.bmp")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_is_recursive_and_converts_every_mode(photo_folder):
    files = find_images(photo_folder)
    assert sorted(p.name for p in files) == ["alpha.png", "broken.jpg", "cmyk.JPG", "grey.png", "pic.bmp",
                                             "pic.webp", "rgb.jpg"]
    for p in files:
        if p.name != "broken.jpg":
            assert open_rgb(p).mode == "RGB"
    white = np.asarray(open_rgb(photo_folder / "a" / "b" / "alpha.png"))
    assert (white == 255).all()
    grey = np.asarray(open_rgb(photo_folder / "a" / "grey.png"))
    assert (grey[..., 0] == grey[..., 1]).all()


def test_unreadable_files_are_skipped_and_reported(photo_folder):
    ds = CropDataset(str(photo_folder), 32, (0.5, 1.0))
    broken = [i for i, p in enumerate(ds.paths) if p.name == "broken.jpg"][0]
    x, skipped = ds[(broken, 123)]
    assert x.shape == (3, 32, 32) and 0 <= x.min() and x.max() <= 1
    assert skipped.tolist()[0] == broken and (skipped[1:] == -1).all()
    x, skipped = ds[((broken + 1) % len(ds), 5)]
    assert (skipped == -1).all()
    preview, bad = ds.preview_batch(len(ds))
    assert preview.shape == (len(ds) - 1, 3, 32, 32) and bad == [broken]


def test_empty_or_missing_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"holds no images \(jpg, jpeg, png, webp, bmp\)"):
        CropDataset(str(tmp_path / "empty"), 32)
    with pytest.raises(DataError, match="does not exist"):
        CropDataset(str(tmp_path / "nowhere"), 32)
    only_broken = tmp_path / "broken"
    only_broken.mkdir()
    (only_broken / "x.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="none of the 1 images under .* could be read"):
        CropDataset(str(only_broken), 32).preview_batch(2)


def test_crops_are_a_function_of_the_position():
    ds = CropDataset("generated:shapes", 32, (0.3, 1.0))
    a, _ = ds[(7, 99)]
    b, _ = ds[(7, 99)]
    c, _ = ds[(7, 100)]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_batch_order_resumes_exactly_and_shards():
    def take(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    n, b = 10, 3
    whole = take(StepBatchSampler(n, b, seed=4), 8)
    assert take(StepBatchSampler(n, b, seed=4, start_step=5), 3) == whole[5:]
    epoch0 = [i for batch in whole for i, _ in batch][:n]
    assert sorted(epoch0) == list(range(n)), "each epoch visits every image once"
    # two processes with batch b together read exactly what one process with batch 2b reads
    one = take(StepBatchSampler(n, 2 * b, seed=4), 4)
    r0, r1 = take(StepBatchSampler(n, b, seed=4, rank=0, world=2), 4), take(StepBatchSampler(n, b, seed=4, rank=1, world=2), 4)
    assert [x + y for x, y in zip(r0, r1)] == one
    assert take(StepBatchSampler(n, b, seed=5), 1) != whole[:1]


def test_loader_yields_batches_from_a_start_step():
    ds = CropDataset("generated:shapes", 32)
    full = batches(ds, 2, seed=0)
    steps = [next(full)[0] for _ in range(3)]
    resumed = batches(ds, 2, seed=0, start_step=2)
    assert torch.equal(next(resumed)[0], steps[2])


def test_style_images(tmp_path):
    Image.new("RGB", (80, 40), (255, 0, 0)).save(tmp_path / "s.png")
    s = load_style_image(str(tmp_path / "s.png"), 20)
    assert s.shape == (1, 3, 20, 40) and torch.allclose(s[0, 0], torch.ones(20, 40))
    assert load_style_image(str(tmp_path / "s.png"), None).shape == (1, 3, 40, 80)
    assert load_style_image("generated:waves", 48).shape == (1, 3, 48, 48)
    with pytest.raises(DataError, match="style image .*nope.jpg does not exist"):
        load_style_image(str(tmp_path / "nope.jpg"), 64)
    (tmp_path / "bad.png").write_text("x")
    with pytest.raises(DataError, match="is not a readable image"):
        load_style_image(str(tmp_path / "bad.png"), 64)
    with pytest.raises(DataError, match="unknown generated style 'generated:plaid'"):
        load_style_image("generated:plaid", 64)


def test_color_jitter_is_a_pure_function_of_the_crop_seed_and_stays_in_range():
    from dynastream.train.data import CropDataset

    plain = CropDataset("generated:shapes", 32)
    jittered = CropDataset("generated:shapes", 32, color_jitter=0.3)
    x, _ = plain[(1, 7)]
    y, _ = jittered[(1, 7)]
    assert torch.equal(y, jittered[(1, 7)][0])             # the same crop in the same light again
    assert 0 <= float(y.min()) and float(y.max()) <= 1 and (y - x).abs().mean() > 0.01
    for c in range(3):                                      # other light, the same picture: each channel follows
        assert torch.corrcoef(torch.stack([x[c].flatten(), y[c].flatten()]))[0, 1] > 0.8
