"""Fuzzing the command line with hostile files: never a traceback, one error line per bad input.

Each example runs ``digits_predict.cli.main`` in-process on the fuzzed file plus one good
input, and checks the whole outcome: exit status, the good input answered, and for the fuzzed
file either answers or exactly one ``digits-predict: error: FILE: ...`` line.
"""

from __future__ import annotations

import contextlib
import io
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from digits_predict.cli import main
from digits_predict.images import MAX_IMAGE_PIXELS
from factories.onnx_models import bar_image, stroke_weights, tiny_model, write_model

# A warning would reach the user as an extra stderr line: make it fail the test instead.
pytestmark = pytest.mark.filterwarnings("error")

ERROR_PREFIX = "digits-predict: error: "
FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("fuzz")
    good = folder / "good.npy"
    np.save(good, bar_image(vertical=True))
    model = write_model(folder / "model.onnx", tiny_model(*stroke_weights()))
    return {"folder": folder, "good": good, "model": model}


@contextlib.contextmanager
def _fuzzed_file(folder: Path, name: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        yield Path(scratch) / name


def run_cli(workspace: dict[str, Path], fuzzed: Path) -> tuple[int, list[str], list[str]]:
    """Run main on [good, fuzzed, good]; return status, stdout lines and stderr lines."""
    good = str(workspace["good"])
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(["--model", str(workspace["model"]), good, str(fuzzed), good])
    return status, stdout.getvalue().splitlines(), stderr.getvalue().splitlines()


def assert_answered_or_one_error(
    workspace: dict[str, Path], fuzzed: Path, *, must_fail: bool | None = None
) -> str | None:
    """Check the outcome; return the error line's message for the fuzzed file (or None)."""
    status, out, err = run_cli(workspace, fuzzed)
    good = str(workspace["good"])
    good_answers = [line for line in out if line.startswith(f"{good}: ")]
    assert good_answers == [f"{good}: digit 1 (p=0.996)"] * 2
    fuzzed_answers = [line for line in out if not line.startswith(f"{good}: ")]
    if err:
        (line,) = err
        assert line.startswith(f"{ERROR_PREFIX}{fuzzed}: "), line
        message = line.removeprefix(f"{ERROR_PREFIX}{fuzzed}: ")
        assert status == 1 and fuzzed_answers == [] and message
        assert must_fail is not False, f"a valid input was refused: {message}"
        return message
    assert status == 0 and fuzzed_answers, "neither an answer nor an error for the input"
    assert all(line.startswith(str(fuzzed)) for line in fuzzed_answers)
    assert must_fail is not True, "an invalid input was answered"
    return None


@FUZZ
@given(
    content=st.binary(max_size=2048),
    name=st.sampled_from(["x.png", "x.jpg", "x.npy", "x.gif", "x.bin", "x"]),
    magic=st.sampled_from(
        [
            b"",
            b"\x89PNG\r\n\x1a\n",
            b"\xff\xd8\xff",
            b"GIF89a",
            b"BM",
            b"\x93NUMPY\x01\x00",
            b"II*\x00",
            b"RIFF",
        ]
    ),
)
def test_random_bytes_never_raise(
    workspace: dict[str, Path], content: bytes, name: str, magic: bytes
) -> None:
    with _fuzzed_file(workspace["folder"], name) as path:
        path.write_bytes(magic + content)
        # Random bytes after a magic number are not a digit; an empty file certainly is not.
        assert_answered_or_one_error(workspace, path, must_fail=not (magic + content) or None)


REAL_DTYPES = st.one_of(hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes())
ANY_DTYPE = st.one_of(REAL_DTYPES, st.just(np.dtype(bool)), hnp.complex_number_dtypes())
SHAPES = st.one_of(
    st.just((28, 28)),
    st.tuples(st.integers(0, 3), st.just(28), st.just(28)),
    hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=30),
)


def _is_valid_pixels(array: np.ndarray) -> bool:
    """The oracle: what load_array must accept, written independently of digits_predict."""
    if array.dtype.kind not in "iuf":
        return False
    if array.shape != (28, 28) and not (array.ndim == 3 and array.shape[1:] == (28, 28)):
        return False
    if array.size == 0:
        return False
    values = array.astype(np.float64).reshape(-1, 28 * 28)
    in_range = np.all(np.isfinite(values)) and values.min() >= 0 and values.max() <= 255
    # an image whose brightest pixel is at most 1 looks divided by 255 (or is blank)
    return bool(in_range and np.all(values.max(axis=1) > 1))


@FUZZ
@given(array=hnp.arrays(dtype=ANY_DTYPE, shape=SHAPES))
def test_random_npy_contents_are_answered_exactly_when_valid(
    workspace: dict[str, Path], array: np.ndarray
) -> None:
    with _fuzzed_file(workspace["folder"], "x.npy") as path:
        np.save(path, array, allow_pickle=False)
        valid = _is_valid_pixels(array)
        message = assert_answered_or_one_error(workspace, path, must_fail=not valid)
        if not valid:
            assert "expected" in message


@FUZZ
@given(
    array=hnp.arrays(dtype=hnp.floating_dtypes(), shape=st.sampled_from([(28, 28), (2, 28, 28)])),
    bad_index=st.integers(0, 28 * 28 - 1),
    bad_value=st.sampled_from([np.nan, np.inf, -np.inf]),
)
def test_non_finite_pixels_are_refused(
    workspace: dict[str, Path], array: np.ndarray, bad_index: int, bad_value: float
) -> None:
    array = np.clip(np.nan_to_num(array), 0, 255).astype(array.dtype)
    array.reshape(-1)[bad_index] = bad_value
    with _fuzzed_file(workspace["folder"], "x.npy") as path:
        np.save(path, array)
        message = assert_answered_or_one_error(workspace, path, must_fail=True)
        assert "NaN or infinite" in message


@FUZZ
@given(
    shape=st.sampled_from([(28, 28), (3, 28, 28), (784,)]),
    fill=st.sampled_from([0, 1.5, "seven", None, (1, 2)]),
)
def test_pickled_object_arrays_are_refused(
    workspace: dict[str, Path], shape: tuple[int, ...], fill: object
) -> None:
    array = np.empty(shape, dtype=object)
    array.fill(fill)
    with _fuzzed_file(workspace["folder"], "x.npy") as path:
        np.save(path, array, allow_pickle=True)
        message = assert_answered_or_one_error(workspace, path, must_fail=True)
        assert "Python objects" in message


def _png_header(width: int, height: int, bit_depth: int, colour_type: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    idat = zlib.compress(b"\x00" * 64)
    idat_chunk = struct.pack(">I", len(idat)) + b"IDAT" + idat
    idat_chunk += struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + crc + idat_chunk + iend


@FUZZ
@given(
    width=st.integers(1, 2**31 - 1),
    height=st.integers(1, 2**31 - 1),
    depth_and_colour=st.sampled_from([(8, 0), (16, 0), (8, 2), (8, 6), (8, 3), (1, 0)]),
)
def test_png_headers_claiming_huge_sizes_are_refused_without_decoding(
    workspace: dict[str, Path], width: int, height: int, depth_and_colour: tuple[int, int]
) -> None:
    with _fuzzed_file(workspace["folder"], "bomb.png") as path:
        path.write_bytes(_png_header(width, height, *depth_and_colour))
        message = assert_answered_or_one_error(workspace, path, must_fail=True)
        if width * height > MAX_IMAGE_PIXELS:
            assert "megapixels" in message


@FUZZ
@given(
    pixels=hnp.arrays(np.uint16, hnp.array_shapes(min_dims=2, max_dims=2, max_side=40)),
)
def test_sixteen_bit_pngs_are_answered_or_called_blank(
    workspace: dict[str, Path], pixels: np.ndarray
) -> None:
    with _fuzzed_file(workspace["folder"], "deep.png") as path:
        Image.fromarray(pixels).save(path)
        span = (int(pixels.max()) - int(pixels.min())) / 257
        message = assert_answered_or_one_error(workspace, path, must_fail=span < 16 or None)
        if message is not None:
            assert "blank" in message


@FUZZ
@given(
    indices=hnp.arrays(np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, max_side=40)),
    palette=st.binary(min_size=768, max_size=768),
    alpha=st.binary(min_size=1, max_size=256),
)
def test_palette_images_with_alpha_are_answered_or_refused_cleanly(
    workspace: dict[str, Path], indices: np.ndarray, palette: bytes, alpha: bytes
) -> None:
    height, width = indices.shape
    image = Image.frombytes("P", (width, height), indices.tobytes())
    image.putpalette(palette)
    with _fuzzed_file(workspace["folder"], "palette.png") as path:
        image.save(path, transparency=alpha)
        message = assert_answered_or_one_error(workspace, path)
        if message is not None:
            assert "blank" in message or "transparent" in message


def test_zero_byte_files_of_every_kind_are_refused(workspace: dict[str, Path]) -> None:
    for name in ["empty.png", "empty.npy", "empty.jpg", "empty"]:
        with _fuzzed_file(workspace["folder"], name) as path:
            path.touch()
            message = assert_answered_or_one_error(workspace, path, must_fail=True)
            assert "empty (0 bytes)" in message
