"""The one image reader: transparency, odd modes, orientation, size limits, crop or pad."""
import numpy as np
import pytest
from PIL import Image

from artforge.errors import ImageError, ImageTooLarge
from artforge.imaging import fit_square, parse_colour, read_image
from artforge.benchmarks.reliability import write_png_header


def test_transparent_areas_land_on_the_background_colour(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 200  # red stored under...
    rgba[:5, :, 3] = 255  # ...an opaque top half and a transparent bottom half
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.shape == (10, 10, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [200, 0, 0] and image[9, 9].tolist() == [255, 255, 255]
    assert read_image(tmp_path / "a.png", background=(0, 0, 0))[9, 9].tolist() == [0, 0, 0]
    grey_alpha = Image.fromarray(np.stack([np.full((4, 4), 50, np.uint8), np.zeros((4, 4), np.uint8)], -1), "LA")
    grey_alpha.save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png", background=(10, 20, 30))[0, 0].tolist() == [10, 20, 30]


def test_palette_transparency_is_honoured_without_warnings(tmp_path, recwarn):
    picture = Image.new("P", (6, 6), 1)
    picture.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    picture.putpixel((0, 0), 0)
    picture.save(tmp_path / "p.png", transparency=0)
    image = read_image(tmp_path / "p.png")
    assert image[0, 0].tolist() == [255, 255, 255] and image[1, 1].tolist() == [0, 255, 0]
    assert not [w for w in recwarn if "Palette" in str(w.message)]


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(tmp_path / "g16.png")
    assert read_image(tmp_path / "g16.png")[0, 0].tolist() == [128, 128, 128]


def test_cmyk_and_grey_become_rgb(tmp_path):
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    assert read_image(tmp_path / "c.jpg")[0, 0, 0] > 200  # cyan-free, magenta+yellow: red
    Image.new("L", (4, 4), 77).save(tmp_path / "l.png")
    assert read_image(tmp_path / "l.png")[0, 0].tolist() == [77, 77, 77]


def test_exif_orientation_is_applied(tmp_path):
    picture = Image.new("RGB", (20, 10), (0, 0, 255))
    exif = picture.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    picture.save(tmp_path / "o.jpg", exif=exif)
    assert read_image(tmp_path / "o.jpg").shape == (20, 10, 3)


def test_a_declared_huge_size_is_refused_before_decoding(tmp_path):
    write_png_header(tmp_path / "bomb.png", 50_000, 50_000)
    with pytest.raises(ImageTooLarge, match="is 50000x50000 .2500 megapixels., over the limit of 100"):
        read_image(tmp_path / "bomb.png")
    Image.new("RGB", (200, 100)).save(tmp_path / "mid.png")
    with pytest.raises(ImageTooLarge, match="over the limit"):
        read_image(tmp_path / "mid.png", max_pixels=10_000)


def test_large_jpegs_are_decoded_at_reduced_size_when_that_is_all_the_caller_needs(tmp_path):
    Image.new("RGB", (800, 800), (9, 9, 9)).save(tmp_path / "big.jpg")
    assert read_image(tmp_path / "big.jpg", size_hint=100).shape == (100, 100, 3)  # 1/8 scale
    assert read_image(tmp_path / "big.jpg", max_pixels=20_000, size_hint=100).shape == (100, 100, 3)
    with pytest.raises(ImageTooLarge):
        read_image(tmp_path / "big.jpg", max_pixels=20_000)


def test_unreadable_files_are_image_errors_that_name_the_file(tmp_path):
    (tmp_path / "x.png").write_bytes(b"nope")
    with pytest.raises(ImageError, match="cannot read image .*x.png"):
        read_image(tmp_path / "x.png")
    with pytest.raises(ImageError, match="cannot read image .*missing.png"):
        read_image(tmp_path / "missing.png")


def test_crop_fills_the_square_and_pad_keeps_the_whole_picture():
    wide = np.zeros((10, 40, 3), np.uint8)
    wide[:, :5] = 255  # a white left edge that a centre crop cuts away
    cropped = fit_square(wide, 10, "crop")
    padded = fit_square(wide, 20, "pad", background=(0, 0, 255))
    assert cropped.shape == (10, 10, 3)
    assert cropped[:, 0].max() == 0
    assert padded.shape == (20, 20, 3) and padded[0, 10].tolist() == [0, 0, 255]  # letterbox
    assert padded[10, 0].tolist()[0] > 200  # the white edge survived
    with pytest.raises(ValueError, match="fit must be one of"):
        fit_square(wide, 10, "stretch")


def test_background_colours_parse_from_names_hex_and_triples():
    assert parse_colour("white") == (255, 255, 255) and parse_colour("#102030") == (16, 32, 48)
    assert parse_colour("1,2,3") == (1, 2, 3)
    with pytest.raises(ImageError, match="is not a colour"):
        parse_colour("1,2,300")
