// MNIST-form preprocessing for the browser: the JavaScript twin of
// digits_predict.images (to_mnist_form, and the grayscale step of load_image).
//
// A picture of a digit (any size) becomes what the model was trained on: white ink on
// black, cropped to the ink, the longer side scaled to 20 px with Lanczos-3, and placed
// in a 28x28 field with its centre of mass at pixel (14, 14). The same steps, constants
// and rounding as the Python code, in the same order, so both give the same pixels
// (tests/system/test_demo.py measures how close). Both the drawing canvas and dropped
// files go through this one module. No DOM access here: plain arrays in, arrays out.

export const IMAGE_SIDE = 28;
// MNIST digits fill a 20x20 box inside the 28x28 field.
export const DIGIT_BOX = 20;
// The least difference between the darkest and brightest pixel (0..255) that can still be
// a digit rather than a blank page with a little noise.
export const MIN_CONTRAST = 16.0;
// The background noise floor is estimated from the border; the cap keeps a digit that
// runs into the border from being mistaken for noise.
export const MAX_NOISE_FLOOR = 0.5;
// In a noisy picture, the ink strength (0..1) a pixel needs to count towards the box.
export const SIGNIFICANT_INK = 0.25;
// Larger pictures are block-averaged down to at most this many pixels per side first.
export const WORKING_SIZE = 1024;
// Files with more pixels are refused (50 megapixels): a PNG from its header, before its
// pixels are decoded.
export const MAX_IMAGE_PIXELS = 50_000_000;

/** A picture with no digit in it; the message says why, for the person who drew it. */
export class BlankImageError extends Error {
  constructor(message) {
    super(message);
    this.name = "BlankImageError";
  }
}

/** Why a picture of width x height pixels is refused, word for word as Python says it. */
export function tooLargeMessage(width, height) {
  return (
    `image is ${width}x${height} (${oneDecimal((width * height) / 1e6)} megapixels); ` +
    `expected at most ${Math.floor(MAX_IMAGE_PIXELS / 1_000_000)} megapixels`
  );
}

// Python's f"{value:.1f}". toFixed rounds a tie up, Python to the even digit; a double can
// only be a tie at one decimal when it ends in .25 or .75, and only .25 rounds differently.
function oneDecimal(value) {
  const quarters = value * 4;
  if (Number.isInteger(quarters) && quarters % 4 === 1) return `${Math.floor(value)}.2`;
  return value.toFixed(1);
}

/**
 * The grayscale picture (0..255, row-major Float64Array) that digits_predict.images.load_image
 * makes of an image before to_mnist_form, from its decoded RGBA bytes: {gray, width, height}.
 *
 * `hasAlpha` says whether Pillow opens the file with transparency (an alpha channel or a
 * transparent colour, as in an RGBA or LA PNG or a PNG with a tRNS chunk). Python sends
 * every such picture, opaque or not, through its float alpha compositing onto the
 * background that contrasts with the drawn pixels; any other picture takes Pillow's
 * convert("L") integer luma. So does this function, which then gives an L, RGB or RGBA PNG
 * exactly the values Python reads. Without `hasAlpha` (the drawing pad, or a file whose
 * header was not read) any pixel that is not fully opaque counts as transparency.
 * Pictures wider or taller than WORKING_SIZE are first shrunk by averaging blocks, as
 * Pillow's reduce() does and in the same order: before the luma for an opaque picture,
 * before the compositing for a transparent one.
 */
export function pictureFromRGBA(rgba, width, height, hasAlpha) {
  const count = width * height;
  if (!(width > 0 && height > 0) || rgba.length !== count * 4) {
    throw new RangeError(`expected ${count * 4} RGBA bytes for ${width}x${height}, got ${rgba.length}`);
  }
  const transparent = hasAlpha ?? !everyPixelOpaque(rgba);
  const factor = Math.ceil(Math.max(width, height) / WORKING_SIZE);
  if (!transparent) {
    const gray = lumaLevels(rgba, count);
    if (factor <= 1) return { gray, width, height };
    return reduceLevels(gray, width, height, factor);
  }
  const reduced = factor > 1 ? reduceRGBA(rgba, width, height, factor) : { rgba, width, height };
  return {
    gray: flattenAlpha(reduced.rgba, reduced.width * reduced.height),
    width: reduced.width,
    height: reduced.height,
  };
}

function everyPixelOpaque(rgba) {
  for (let i = 3; i < rgba.length; i += 4) if (rgba[i] !== 255) return false;
  return true;
}

// Pillow's ITU-R 601-2 luma in 16-bit fixed point, rounded to whole levels.
function lumaLevels(rgba, count) {
  const gray = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const p = i * 4;
    gray[i] = (rgba[p] * 19595 + rgba[p + 1] * 38470 + rgba[p + 2] * 7471 + 0x8000) >>> 16;
  }
  return gray;
}

// Python's _flatten_alpha: the float luma composited onto white for dark drawn pixels and
// onto black for bright ones, so that the digit stays visible whichever ink a transparent
// picture was drawn with.
function flattenAlpha(rgba, count) {
  const gray = new Float64Array(count);
  let totalOpacity = 0;
  let drawnBrightness = 0;
  for (let i = 0; i < count; i++) {
    const p = i * 4;
    const luma = rgba[p] * 0.299 + rgba[p + 1] * 0.587 + rgba[p + 2] * 0.114;
    const opacity = rgba[p + 3] / 255;
    gray[i] = luma;
    totalOpacity += opacity;
    drawnBrightness += luma * opacity;
  }
  if (totalOpacity === 0) {
    throw new BlankImageError("image is fully transparent; expected a visible digit");
  }
  const background = drawnBrightness / totalOpacity < 127.5 ? 255 : 0;
  for (let i = 0; i < count; i++) {
    const opacity = rgba[i * 4 + 3] / 255;
    gray[i] = gray[i] * opacity + background * (1 - opacity);
  }
  return gray;
}

// The blocks of Pillow's reduce(): factor x factor, the last row and column of them partial
// when the side is not a multiple of the factor.
function forEachBlock(width, height, factor, visit) {
  const outWidth = Math.ceil(width / factor);
  const outHeight = Math.ceil(height / factor);
  for (let by = 0; by < outHeight; by++) {
    const y0 = by * factor;
    const y1 = Math.min(y0 + factor, height);
    for (let bx = 0; bx < outWidth; bx++) {
      const x0 = bx * factor;
      visit(by * outWidth + bx, x0, y0, Math.min(x0 + factor, width), y1);
    }
  }
  return { outWidth, outHeight };
}

// The mean of n 8-bit values from their sum, in Pillow's fixed-point arithmetic, to the bit.
function blockMean(sum, n) {
  const multiplier = Math.floor(2 ** 32 / (256 * n));
  return Math.floor(((sum + Math.floor(n / 2)) * multiplier) / 2 ** 24);
}

// Pillow's reduce() of an 8-bit (L) picture.
function reduceLevels(gray, width, height, factor) {
  const out = new Float64Array(Math.ceil(width / factor) * Math.ceil(height / factor));
  const { outWidth, outHeight } = forEachBlock(width, height, factor, (index, x0, y0, x1, y1) => {
    let sum = 0;
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) sum += gray[y * width + x];
    }
    out[index] = blockMean(sum, (y1 - y0) * (x1 - x0));
  });
  return { gray: out, width: outWidth, height: outHeight };
}

// Pillow's reduce() of an RGBA picture, which goes through premultiplied RGBa so that the
// colour of transparent pixels does not bleed into their neighbours: RGBA to RGBa rounds
// (Pillow's MULDIV255), each channel is reduced as an L picture, and RGBa to RGBA truncates.
function reduceRGBA(rgba, width, height, factor) {
  const out = new Uint8ClampedArray(Math.ceil(width / factor) * Math.ceil(height / factor) * 4);
  const premultiplied = (value, alpha) => {
    const product = value * alpha + 128;
    return ((product >> 8) + product) >> 8;
  };
  const { outWidth, outHeight } = forEachBlock(width, height, factor, (index, x0, y0, x1, y1) => {
    let red = 0;
    let green = 0;
    let blue = 0;
    let opacity = 0;
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        const p = (y * width + x) * 4;
        const alpha = rgba[p + 3];
        red += premultiplied(rgba[p], alpha);
        green += premultiplied(rgba[p + 1], alpha);
        blue += premultiplied(rgba[p + 2], alpha);
        opacity += alpha;
      }
    }
    const n = (y1 - y0) * (x1 - x0);
    const alpha = blockMean(opacity, n);
    const q = index * 4;
    [red, green, blue].forEach((sum, channel) => {
      const mean = blockMean(sum, n);
      // Uint8ClampedArray clips at 255, as Pillow's CLIP8 does.
      out[q + channel] = alpha === 0 || alpha === 255 ? mean : Math.floor((255 * mean) / alpha);
    });
    out[q + 3] = alpha;
  });
  return { rgba: out, width: outWidth, height: outHeight };
}

/**
 * The MNIST-form 28x28 image (Float32Array of 784 values in 0..255, row-major) of a
 * grayscale picture of a digit: `gray` holds width*height values in 0..255.
 * Throws BlankImageError when there is no digit to see.
 */
export function toMnistForm(gray, width, height) {
  if (!(width > 0 && height > 0) || gray.length !== width * height) {
    throw new RangeError(`picture of ${gray.length} pixels is not ${width}x${height}`);
  }
  let lowest = Infinity;
  let highest = -Infinity;
  for (let i = 0; i < gray.length; i++) {
    const value = gray[i];
    if (!Number.isFinite(value)) {
      throw new RangeError("picture holds NaN or infinite pixel values; expected finite 0..255");
    }
    if (value < lowest) lowest = value;
    if (value > highest) highest = value;
  }
  if (highest - lowest < MIN_CONTRAST) {
    throw new BlankImageError(
      `image is blank: its pixels span only ${(highest - lowest).toFixed(0)} of 255 levels; ` +
        `expected a digit standing out from its background by at least ${MIN_CONTRAST}`,
    );
  }
  const span = highest - lowest;
  const normalized = new Float64Array(gray.length);
  for (let i = 0; i < gray.length; i++) normalized[i] = (gray[i] - lowest) / span;
  const { ink, noiseFloor } = inkStrength(normalized, width, height);

  // In a clean picture every non-zero pixel is ink, so MNIST-form input keeps its exact
  // extent; in a noisy one, specks that rose above the noise floor must not stretch the box.
  const threshold = noiseFloor > 0 ? SIGNIFICANT_INK : 0;
  let top = height;
  let bottom = -1;
  let left = width;
  let right = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (ink[y * width + x] > threshold) {
        if (y < top) top = y;
        if (y > bottom) bottom = y;
        if (x < left) left = x;
        if (x > right) right = x;
      }
    }
  }
  if (bottom < 0) {
    throw new BlankImageError(
      "image is blank: nothing stands out from the background noise; expected a digit",
    );
  }
  const cropWidth = right - left + 1;
  const cropHeight = bottom - top + 1;
  const digit = new Float64Array(cropWidth * cropHeight);
  for (let y = 0; y < cropHeight; y++) {
    for (let x = 0; x < cropWidth; x++) {
      digit[y * cropWidth + x] = ink[(y + top) * width + x + left];
    }
  }
  const scaled = scaleToBox(digit, cropWidth, cropHeight);
  const field = centreByMass(scaled.pixels, scaled.width, scaled.height);
  const out = new Float32Array(IMAGE_SIDE * IMAGE_SIDE);
  for (let i = 0; i < out.length; i++) out[i] = field[i] * 255;
  return out;
}

// From 0..1 intensities, the ink as 0..1 on a 0 background, and the noise floor removed.
function inkStrength(normalized, width, height) {
  let border = borderPixels(normalized, width, height);
  // The border is mostly background whatever the digit touches: a bright border means a
  // dark digit on a light page, which MNIST shows inverted.
  if (median(border) > 0.5) {
    for (let i = 0; i < normalized.length; i++) normalized[i] = 1 - normalized[i];
    border = border.map((value) => 1 - value);
  }
  const background = median(border);
  const ink = new Float64Array(normalized.length);
  for (let i = 0; i < ink.length; i++) {
    ink[i] = clip01((normalized[i] - background) / (1 - background));
  }
  const borderInk = border.map((value) => clip01((value - background) / (1 - background)));
  // Faint "ink" everywhere (JPEG artefacts, paper texture) no stronger than most of the
  // border is background; a clean picture has a zero floor and passes unchanged.
  const noiseFloor = Math.min(percentile(borderInk, 95), MAX_NOISE_FLOOR);
  if (noiseFloor > 0) {
    for (let i = 0; i < ink.length; i++) ink[i] = clip01((ink[i] - noiseFloor) / (1 - noiseFloor));
  }
  return { ink, noiseFloor };
}

// The outermost row and column on every side, in the order numpy concatenates them.
function borderPixels(pixels, width, height) {
  if (Math.min(width, height) <= 2) return Float64Array.from(pixels);
  const border = new Float64Array(2 * width + 2 * (height - 2));
  let n = 0;
  for (let x = 0; x < width; x++) border[n++] = pixels[x];
  for (let x = 0; x < width; x++) border[n++] = pixels[(height - 1) * width + x];
  for (let y = 1; y < height - 1; y++) border[n++] = pixels[y * width];
  for (let y = 1; y < height - 1; y++) border[n++] = pixels[y * width + width - 1];
  return border;
}

function median(values) {
  const sorted = Float64Array.from(values).sort();
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

// numpy.percentile with its default linear interpolation, including its way of
// interpolating from the upper neighbour when the fraction is at least one half.
function percentile(values, q) {
  const sorted = Float64Array.from(values).sort();
  const fraction = q / 100;
  const position = sorted.length * fraction + (1 - fraction) - 1;
  const below = Math.floor(position);
  const above = Math.min(below + 1, sorted.length - 1);
  const t = position - below;
  const a = sorted[below];
  const b = sorted[above];
  const difference = b - a;
  return t >= 0.5 ? b - difference * (1 - t) : a + difference * t;
}

function clip01(value) {
  return value < 0 ? 0 : value > 1 ? 1 : value;
}

// Python's round(): halves go to the even neighbour.
function roundHalfEven(value) {
  const floor = Math.floor(value);
  const rest = value - floor;
  if (rest > 0.5) return floor + 1;
  if (rest < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

// Resize so the longer side is DIGIT_BOX pixels, keeping the aspect ratio.
function scaleToBox(digit, width, height) {
  const scale = DIGIT_BOX / Math.max(height, width);
  const outWidth = Math.max(1, roundHalfEven(width * scale));
  const outHeight = Math.max(1, roundHalfEven(height * scale));
  if (outWidth === width && outHeight === height) return { pixels: digit, width, height };
  const resized = lanczosResize(Float32Array.from(digit), width, height, outWidth, outHeight);
  // Lanczos over- and undershoots a little at sharp edges; the field stays within 0..1.
  const pixels = new Float64Array(resized.length);
  for (let i = 0; i < resized.length; i++) pixels[i] = clip01(resized[i]);
  return { pixels, width: outWidth, height: outHeight };
}

function sinc(x) {
  if (x === 0) return 1;
  const angle = x * Math.PI;
  return Math.sin(angle) / angle;
}

function lanczos3(x) {
  return x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0;
}

// Pillow's resampling weights for one axis: for each output pixel the first input pixel
// and the normalized weights. The filter's support widens by the downscale factor, so a
// shrink averages every input pixel instead of skipping some.
function lanczosWeights(inSize, outSize) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 3 * filterScale;
  const weights = [];
  for (let out = 0; out < outSize; out++) {
    const centre = (out + 0.5) * scale;
    // C's (int) cast truncates towards zero; the lower bound is clamped at 0 anyway.
    const first = Math.max(Math.trunc(centre - support + 0.5), 0);
    const last = Math.min(Math.trunc(centre + support + 0.5), inSize);
    const kernel = new Float64Array(last - first);
    let total = 0;
    for (let i = 0; i < kernel.length; i++) {
      kernel[i] = lanczos3((i + first - centre + 0.5) / filterScale);
      total += kernel[i];
    }
    if (total !== 0) for (let i = 0; i < kernel.length; i++) kernel[i] /= total;
    weights.push({ first, kernel });
  }
  return weights;
}

// Pillow's separable resize of a float ("F" mode) image: rows first, then columns, each
// pass stored as float32 like Pillow's intermediate image; an axis that keeps its size
// is not resampled.
function lanczosResize(pixels, width, height, outWidth, outHeight) {
  let current = pixels;
  let currentWidth = width;
  if (outWidth !== width) {
    const weights = lanczosWeights(width, outWidth);
    const next = new Float32Array(outWidth * height);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < outWidth; x++) {
        const { first, kernel } = weights[x];
        let sum = 0;
        for (let i = 0; i < kernel.length; i++) sum += current[y * width + first + i] * kernel[i];
        next[y * outWidth + x] = sum;
      }
    }
    current = next;
    currentWidth = outWidth;
  }
  if (outHeight !== height) {
    const weights = lanczosWeights(height, outHeight);
    const next = new Float32Array(currentWidth * outHeight);
    for (let y = 0; y < outHeight; y++) {
      const { first, kernel } = weights[y];
      for (let x = 0; x < currentWidth; x++) {
        let sum = 0;
        for (let i = 0; i < kernel.length; i++) {
          sum += current[(first + i) * currentWidth + x] * kernel[i];
        }
        next[y * currentWidth + x] = sum;
      }
    }
    current = next;
  }
  return current;
}

// Place the digit in the 28x28 field with its centre of mass at pixel (14, 14), shifted
// by whole pixels as in MNIST and no further than keeps all ink inside the field.
function centreByMass(digit, width, height) {
  let mass = 0;
  let rowMoment = 0;
  let columnMoment = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const value = digit[y * width + x];
      mass += value;
      rowMoment += value * y;
      columnMoment += value * x;
    }
  }
  if (mass <= 0) throw new BlankImageError("image is blank after scaling; expected a digit");
  const centre = IMAGE_SIDE >> 1;
  const top = placement(centre - rowMoment / mass, IMAGE_SIDE - height);
  const left = placement(centre - columnMoment / mass, IMAGE_SIDE - width);
  const field = new Float64Array(IMAGE_SIDE * IMAGE_SIDE);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      field[(top + y) * IMAGE_SIDE + left + x] = digit[y * width + x];
    }
  }
  return field;
}

function placement(offset, largest) {
  return Math.min(Math.max(roundHalfEven(offset), 0), largest);
}
