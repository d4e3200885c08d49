"""Image files and .npy arrays in, MNIST-form 28x28 pixels out."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

import digits_predict.images as images_module
from digits_predict import InputError, Predictor, load_array, load_image, load_input
from digits_predict.images import DIGIT_BOX, to_mnist_form
from factories.onnx_models import random_weights, tiny_model, write_model

# --- drawing digits ----------------------------------------------------------------------------


def ink_mask(
    width: int, height: int, shape: str = "seven", box: tuple[float, ...] | None = None
) -> np.ndarray:
    """A digit as ink strength 0..1, (height, width), anti-aliased by 4x supersampling.

    ``box`` (left, top, right, bottom) in pixels is where the digit lies; by default the
    middle of the canvas with a margin.
    """
    scale = 4
    left, top, right, bottom = box or (width * 0.3, height * 0.2, width * 0.7, height * 0.8)
    canvas = Image.new("L", (width * scale, height * scale), 0)
    draw = ImageDraw.Draw(canvas)
    stroke = max(1, round(min(right - left, bottom - top) * 0.15 * scale))
    corners = [(x * scale, y * scale) for x, y in ((left, top), (right, top), (left, bottom))]
    if shape == "seven":
        draw.line(
            [corners[0], corners[1], ((left + right) / 2 * scale, bottom * scale)],
            fill=255,
            width=stroke,
            joint="curve",
        )
    elif shape == "zero":
        draw.ellipse(
            [left * scale, top * scale, right * scale, bottom * scale], outline=255, width=stroke
        )
    elif shape == "one":
        middle = (left + right) / 2 * scale
        draw.line([(middle, top * scale), (middle, bottom * scale)], fill=255, width=stroke)
    else:
        raise ValueError(shape)
    small = canvas.resize((width, height), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64) / 255.0


def _gray(ink: np.ndarray, ink_level: float, paper_level: float) -> np.ndarray:
    return paper_level + (ink_level - paper_level) * ink


def _l_image(ink: np.ndarray, ink_level: float = 255, paper_level: float = 0) -> Image.Image:
    return Image.fromarray(np.round(_gray(ink, ink_level, paper_level)).astype(np.uint8))


def _rgb_image(ink: np.ndarray, ink_rgb: tuple, paper_rgb: tuple) -> Image.Image:
    pixels = np.stack([_gray(ink, i, p) for i, p in zip(ink_rgb, paper_rgb, strict=True)], -1)
    return Image.fromarray(np.round(pixels).astype(np.uint8))


def _rgba_image(ink: np.ndarray, rgb: tuple) -> Image.Image:
    """Ink of one colour on a fully transparent canvas: only alpha draws the digit."""
    pixels = np.zeros((*ink.shape, 4), dtype=np.uint8)
    pixels[..., :3] = rgb
    pixels[..., 3] = np.round(ink * 255)
    return Image.fromarray(pixels)


def _la_image(ink: np.ndarray) -> Image.Image:
    return _rgba_image(ink, (0, 0, 0)).convert("LA")


def _palette_image(ink: np.ndarray) -> Image.Image:
    return _rgb_image(ink, (20, 20, 120), (250, 250, 235)).convert(
        "P", palette=Image.Palette.ADAPTIVE, colors=16
    )


def _palette_with_transparency(ink: np.ndarray) -> Image.Image:
    """256 grays, black ink: index i is gray 255 - i, and index 0 (no ink) is transparent."""
    image = Image.fromarray(np.round(ink * 255).astype(np.uint8), mode=None).convert("L")
    paletted = image.convert("P")
    paletted.putpalette([channel for i in range(256) for channel in (255 - i,) * 3])
    paletted.info["transparency"] = 0
    return paletted


def _sixteen_bit(ink: np.ndarray, dark_ink: bool = False) -> Image.Image:
    levels = (1.0 - ink) if dark_ink else ink
    return Image.fromarray(np.round(levels * 65535).astype(np.uint16))


def _one_bit(ink: np.ndarray) -> Image.Image:
    return Image.fromarray(ink < 0.5)  # True (white) paper, False (black) ink


def _noisy_photo(ink: np.ndarray) -> Image.Image:
    """Pencil on grey paper, uneven light and sensor noise."""
    rng = np.random.default_rng(0)
    light = np.linspace(0, 25, ink.shape[1])[np.newaxis, :]
    paper = _gray(ink, 70, 175) + light + rng.normal(0, 4, ink.shape)
    return Image.fromarray(np.clip(np.round(paper), 0, 255).astype(np.uint8))


SIZE = (120, 150)  # width, height: not square on purpose

# name -> (make image from ink mask, save format, canvas (width, height), digit box)
CASES: dict[str, tuple[Callable[[np.ndarray], Image.Image], str, tuple[int, int], tuple | None]]
CASES = {
    "L white on black": (_l_image, "PNG", SIZE, None),
    "L black on white": (lambda ink: _l_image(ink, 0, 255), "PNG", SIZE, None),
    "L noisy grey photo": (_noisy_photo, "PNG", SIZE, None),
    "RGB blue ink on cream": (
        lambda ink: _rgb_image(ink, (20, 30, 140), (250, 245, 220)),
        "PNG",
        SIZE,
        None,
    ),
    "RGBA black ink on transparent": (lambda ink: _rgba_image(ink, (0, 0, 0)), "PNG", SIZE, None),
    "RGBA white ink on transparent": (
        lambda ink: _rgba_image(ink, (255, 255, 255)),
        "PNG",
        SIZE,
        None,
    ),
    "LA black ink on transparent": (_la_image, "PNG", SIZE, None),
    "P palette": (_palette_image, "PNG", SIZE, None),
    "P palette with transparent index": (_palette_with_transparency, "PNG", SIZE, None),
    "I;16 white on black": (_sixteen_bit, "PNG", SIZE, None),
    "I;16 black on white": (lambda ink: _sixteen_bit(ink, dark_ink=True), "PNG", SIZE, None),
    "1-bit": (_one_bit, "PNG", SIZE, None),
    "JPEG L black on white": (lambda ink: _l_image(ink, 0, 255), "JPEG", SIZE, None),
    "JPEG RGB": (lambda ink: _rgb_image(ink, (40, 40, 40), (240, 235, 230)), "JPEG", SIZE, None),
    "JPEG CMYK": (
        lambda ink: _rgb_image(ink, (0, 0, 0), (255, 255, 255)).convert("CMYK"),
        "JPEG",
        SIZE,
        None,
    ),
    "GIF": (lambda ink: _l_image(ink, 0, 255), "GIF", SIZE, None),
    "BMP": (lambda ink: _rgb_image(ink, (0, 0, 0), (255, 255, 255)), "BMP", SIZE, None),
    "TIFF": (_l_image, "TIFF", SIZE, None),
    "F float TIFF in 0..1": (
        lambda ink: Image.fromarray(ink.astype(np.float32)),
        "TIFF",
        SIZE,
        None,
    ),
    "WebP": (lambda ink: _rgb_image(ink, (0, 0, 0), (255, 255, 255)), "WEBP", SIZE, None),
    "large non-square, digit off-centre": (
        lambda ink: _l_image(ink, 0, 255),
        "PNG",
        (2400, 900),
        (1700, 150, 1980, 700),
    ),
    "small, enlarged": (lambda ink: _l_image(ink, 0, 255), "PNG", (24, 30), None),
}


def _save(image: Image.Image, path: Path, image_format: str) -> Path:
    image.save(path, format=image_format)
    return path


@pytest.fixture(scope="module")
def canonical_seven() -> np.ndarray:
    """The seven, white on black, as load_image makes it: what every encoding must give."""
    return to_mnist_form(ink_mask(*SIZE) * 255)


def _ink_box(image: np.ndarray) -> tuple[int, int]:
    rows = np.flatnonzero(image.any(axis=1))
    columns = np.flatnonzero(image.any(axis=0))
    return rows[-1] - rows[0] + 1, columns[-1] - columns[0] + 1


def _centre_of_mass(image: np.ndarray) -> np.ndarray:
    rows, columns = np.indices(image.shape)
    return np.array([(image * rows).sum(), (image * columns).sum()]) / image.sum()


def _correlation(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.corrcoef(first.ravel(), second.ravel())[0, 1])


def _best_correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Correlation allowing a one-pixel shift: centring by mass rounds to whole pixels, and
    a centre of mass near x.5 may round either way after lossy compression."""
    return max(
        _correlation(np.roll(first, (down, right), axis=(0, 1)), second)
        for down in (-1, 0, 1)
        for right in (-1, 0, 1)
    )


def assert_mnist_form(image: np.ndarray) -> None:
    """28x28 float32 in 0..255, white digit on black, 20 px long, centred by mass."""
    assert image.shape == (28, 28) and image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 255.0
    assert image.max() > 200, "the ink should be (nearly) white"
    corners = image[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert np.all(corners == 0) and np.median(image) == 0, "the background should be black"
    assert max(_ink_box(image)) == DIGIT_BOX
    np.testing.assert_allclose(_centre_of_mass(image), (14, 14), atol=0.75)


@pytest.mark.parametrize("case", list(CASES))
def test_every_encoding_yields_the_same_mnist_form_digit(
    case: str, tmp_path: Path, canonical_seven: np.ndarray
) -> None:
    make, image_format, (width, height), box = CASES[case]
    image = make(ink_mask(width, height, box=box))
    path = _save(image, tmp_path / f"digit.{image_format.lower()}", image_format)
    with Image.open(path) as saved:  # the file really is in the mode the case is about
        expected_mode = {
            "I;16": "I;16",
            "1-bit": "1",
            "P": "P",
            "LA": "LA",
            "RGBA": "RGBA",
            "F ": "F",
        }
        for prefix, mode in expected_mode.items():
            if case.startswith(prefix):
                assert saved.mode == mode
    loaded = load_image(path)
    assert_mnist_form(loaded)
    # Lossy formats (JPEG, WebP) shift strokes by a fraction of a pixel: 0.85, not 0.99.
    assert _best_correlation(loaded, canonical_seven) > 0.85


def test_exif_orientation_is_applied(tmp_path: Path, canonical_seven: np.ndarray) -> None:
    upright = _l_image(ink_mask(*SIZE), 0, 255)
    # EXIF orientation 6: the stored pixels must be turned 90 degrees clockwise for display.
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, format="JPEG", exif=exif)
    loaded = load_image(path)
    assert_mnist_form(loaded)
    assert _best_correlation(loaded, canonical_seven) > 0.9
    assert (
        _best_correlation(load_image(_save(stored, tmp_path / "raw.png", "PNG")), canonical_seven)
        < 0.5
    ), "without the rotation it is another shape"


def _mnist_like(shape: str) -> np.ndarray:
    """A digit made the way MNIST was, independently of digits_predict: drawn in a 20x20
    box, anti-aliased, shifted (whole pixels) so its centre of mass sits at (14, 14)."""
    field = np.zeros((28, 28))
    field[4:24, 4:24] = ink_mask(20, 20, shape, box=(1, 0, 19, 20)) * 255
    shift = np.round(np.array([14.0, 14.0]) - _centre_of_mass(field)).astype(int)
    return np.roll(field, tuple(shift), axis=(0, 1)).round().astype(np.uint8)


@pytest.mark.parametrize("shape", ["seven", "zero", "one"])
def test_an_mnist_form_png_comes_back_essentially_unchanged(shape: str, tmp_path: Path) -> None:
    original = _mnist_like(shape)
    path = _save(Image.fromarray(original), tmp_path / f"{shape}.png", "PNG")
    loaded = load_image(path)
    assert_mnist_form(loaded)
    assert _correlation(loaded, original) > 0.97
    assert np.abs(loaded - original).mean() < 5

    weights, bias = random_weights(seed=11)
    predictor = Predictor(write_model(tmp_path / "model.onnx", tiny_model(weights, bias)))
    before, after = predictor.predict(original), predictor.predict(loaded)
    assert after.digits[0] == before.digits[0]
    np.testing.assert_allclose(after.probabilities, before.probabilities, atol=0.05)


def test_to_mnist_form_keeps_an_mnist_form_array_as_it_is() -> None:
    """Clean MNIST-form input (black border, 20 px box) passes through the pipeline exactly."""
    original = _mnist_like("zero").astype(np.float64)
    assert max(_ink_box(original)) == DIGIT_BOX and original.max() == 255
    np.testing.assert_allclose(to_mnist_form(original), original, atol=1e-3)


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        (np.zeros((40, 30)), "blank: its pixels span only 0 of 255"),
        (np.zeros((0, 30)), r"shape \(0, 30\)"),
        (np.zeros((3, 40, 30)), r"shape \(3, 40, 30\)"),
        (np.where(np.eye(30) > 0, np.nan, 0.0), "NaN or infinite"),
        (np.full((40, 30), 255.0), "blank"),
        (np.full((40, 30), 128.0), "blank"),
        (np.random.default_rng(0).uniform(100, 110, size=(40, 30)), "blank"),
    ],
)
def test_blank_or_malformed_pictures_are_refused(pixels: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        to_mnist_form(pixels)


def test_a_fully_transparent_image_is_refused(tmp_path: Path) -> None:
    path = _save(Image.new("RGBA", (30, 30), (0, 0, 0, 0)), tmp_path / "clear.png", "PNG")
    with pytest.raises(InputError, match="fully transparent"):
        load_image(path)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming ``width`` x ``height`` grey pixels, no pixel data:
    what a decompression bomb looks like to a reader before it decodes anything."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
    chunk += struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + chunk + iend


@pytest.mark.parametrize(
    ("width", "height", "message"),
    [
        (100_000, 100_000, "too large to decode safely|megapixels"),  # Pillow's bomb error
        (10_000, 10_000, "too large to decode safely|megapixels"),  # Pillow's bomb warning
        (8_000, 7_000, r"8000x7000 \(56.0 megapixels\); expected at most 50 megapixels"),
    ],
)
def test_huge_images_are_refused_before_decoding(
    tmp_path: Path, width: int, height: int, message: str
) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(width, height))
    with pytest.raises(InputError, match=message):
        load_image(path)


def test_the_megapixel_guard_applies_to_real_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images_module, "MAX_IMAGE_PIXELS", 1000)
    path = _save(_l_image(ink_mask(40, 30)), tmp_path / "digit.png", "PNG")
    with pytest.raises(InputError, match=r"40x30 .* expected at most 0 megapixels"):
        load_image(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", r"file is empty \(0 bytes\)"),
        (b"hello, I am text", "not a recognised image format"),
        (png_header_only(30, 30), "cannot decode the image"),
    ],
)
def test_unreadable_image_files_are_named(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "digit.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message) as caught:
        load_image(path)
    assert "\n" not in str(caught.value)


def test_a_truncated_png_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    _l_image(ink_mask(60, 60)).save(buffer, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(InputError, match="cannot decode the image"):
        load_image(path)


# --- .npy files --------------------------------------------------------------------------------


def _npy(path: Path, array: np.ndarray, allow_pickle: bool = False) -> Path:
    np.save(path, array, allow_pickle=allow_pickle)
    return path


def test_npy_single_image_and_batch_load_as_float32(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    single = rng.integers(0, 256, size=(28, 28), dtype=np.uint8)
    batch = rng.uniform(0, 255, size=(3, 28, 28))
    loaded_single = load_array(_npy(tmp_path / "one.npy", single))
    loaded_batch = load_array(_npy(tmp_path / "three.npy", batch))
    assert loaded_single.shape == (28, 28) and loaded_single.dtype == np.float32
    assert loaded_batch.shape == (3, 28, 28) and loaded_batch.dtype == np.float32
    np.testing.assert_array_equal(loaded_single, single)
    np.testing.assert_allclose(loaded_batch, batch, rtol=1e-6)
    # Fortran order and big-endian data are numpy's business, not a reason to refuse.
    fortran = np.asfortranarray(batch.astype(">f8"))
    np.testing.assert_allclose(load_array(_npy(tmp_path / "f.npy", fortran)), batch, rtol=1e-6)


def test_load_input_names_each_image_of_a_batch(tmp_path: Path) -> None:
    batch = _npy(tmp_path / "batch.npy", np.full((3, 28, 28), 200, dtype=np.uint8))
    single = _npy(tmp_path / "single.npy", np.full((28, 28), 200, dtype=np.uint8))
    assert load_input(batch).names == tuple(f"{batch}[{i}]" for i in range(3))
    assert load_input(single).names == (str(single),)
    assert load_input(single).images.shape == (1, 28, 28)
    # Told apart by content: a .npy under another name is still an array.
    renamed = tmp_path / "digits.bin"
    renamed.write_bytes(batch.read_bytes())
    assert load_input(renamed).images.shape == (3, 28, 28)


def _npy_with_header(shape: tuple, descr: str = "|u1", data: bytes = b"") -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    header = header.ljust(118) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data


_OBJECTS = np.empty((28, 28), dtype=object)
_OBJECTS[:] = 0
_WITH_NAN = np.zeros((2, 28, 28))
_WITH_NAN[1, 5, 5] = np.nan

BAD_NPY = [
    ("object array (pickled)", lambda p: _npy(p, _OBJECTS, allow_pickle=True), "Python objects"),
    ("1-D", lambda p: _npy(p, np.zeros(784)), r"shape \(784,\)"),
    ("wrong size", lambda p: _npy(p, np.zeros((32, 32))), r"shape \(32, 32\)"),
    ("4-D", lambda p: _npy(p, np.zeros((1, 1, 28, 28))), r"shape \(1, 1, 28, 28\)"),
    ("empty batch", lambda p: _npy(p, np.zeros((0, 28, 28))), "holds no images"),
    ("bool", lambda p: _npy(p, np.zeros((28, 28), dtype=bool)), "dtype bool"),
    ("complex", lambda p: _npy(p, np.zeros((28, 28), dtype=complex)), "dtype complex128"),
    ("strings", lambda p: _npy(p, np.full((28, 28), "a")), "dtype <U1"),
    ("record", lambda p: _npy(p, np.zeros((28, 28), dtype=[("a", "u1")])), "dtype"),
    ("NaN", lambda p: _npy(p, _WITH_NAN), "1 NaN or infinite"),
    ("negative", lambda p: _npy(p, np.full((28, 28), -3.0)), r"-3.0..-3.0, outside 0..255"),
    ("above 255", lambda p: _npy(p, np.full((28, 28), 300, dtype=np.int32)), "outside 0..255"),
    ("0 bytes", lambda p: p.write_bytes(b""), r"empty \(0 bytes\)"),
    ("not npy", lambda p: p.write_bytes(b"PK\x03\x04 a zip?"), "not a valid .npy file"),
    ("bad header", lambda p: p.write_bytes(b"\x93NUMPY\x01\x00\x05\x00{{{{{"), "not a valid .npy"),
    (
        "header promises a vast array",
        lambda p: p.write_bytes(_npy_with_header((10**12, 28, 28), data=b"\x00" * 100)),
        "header promises 784000000000000 bytes .* holds 100",
    ),
    (
        "truncated",
        lambda p: p.write_bytes(_npy_with_header((2, 28, 28), data=b"\x00" * 1000)),
        "header promises 1568 bytes",
    ),
    ("negative shape", lambda p: p.write_bytes(_npy_with_header((-1, 28, 28))), "shape|valid"),
]


@pytest.mark.parametrize(("name", "write", "message"), BAD_NPY, ids=[c[0] for c in BAD_NPY])
def test_bad_npy_files_are_refused_with_what_was_expected(
    tmp_path: Path, name: str, write: Callable[[Path], object], message: str
) -> None:
    path = tmp_path / "input.npy"
    write(path)
    with pytest.raises(InputError, match=message) as caught:
        load_input(path)
    assert "\n" not in str(caught.value)
