// The draw-a-digit page: a drawing pad and dropped PNGs go through the MNIST-form
// preprocessing (mnist_form.mjs) into the pipeline's ONNX model, run by onnxruntime-web.
//
// For tests and benchmarks the page publishes what it did: window.lastResult (the
// 28x28 input, the probabilities, the digit, the model that computed them, the
// stroke-to-answer time) and the data-model-state / data-answer-state attributes of <body>.
// Each answer is also reported to the page's server (POST answers), which appends it to the
// request log with the registry version of the model; a report that fails changes nothing.
// Under an answer a person can say it was right or which digit it was (POST feedback): the
// server keeps the 28x28 input with that label, once per image, for a person to review before
// the next training. Both name the page's id, which the server hands out (POST session).

import * as ort from "./vendor/ort.wasm.bundle.min.mjs";
import {
  BlankImageError,
  IMAGE_SIDE,
  MAX_IMAGE_PIXELS,
  pictureFromRGBA,
  tooLargeMessage,
  toMnistForm,
} from "./mnist_form.mjs";

// Written by the site's build next to the page: which models it holds and the tensor names.
const MANIFEST_URL = "models.json";
const ANSWERS_URL = "answers";
const FEEDBACK_URL = "feedback";
const SESSION_URL = "session";
// Said by the server of a post whose page id it did not hand out (it restarted, say).
const UNKNOWN_PAGE = "page is not an id this server handed out";
const WASM_FILE = "vendor/ort-wasm-simd-threaded.wasm";
// A pen 1/14 of the pad wide (20 px) leaves strokes about 2 px thick, as thick as MNIST's,
// once a digit drawn 200 px tall is scaled into the 20 px box.
const PEN_WIDTH_FRACTION = 1 / 14;
// Every PNG starts with these 8 bytes, then its IHDR chunk: length, type, width, height,
// bit depth, colour type, ...
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const PNG_HEADER_BYTES = 33; // the signature and the whole IHDR chunk, CRC included
// PNG colour types that carry an alpha channel: grey with alpha, RGB with alpha.
const PNG_ALPHA_COLOUR_TYPES = [4, 6];
// The colour types whose tRNS chunk (a transparent colour) makes Python composite the
// picture: RGB and palette. Grey of 2 to 16 bits Python reads as levels whatever its tRNS
// says; 1-bit grey, which Pillow opens as mode "1", it composites too.
const PNG_TRNS_COLOUR_TYPES = [2, 3];
const PNG_GREY = 0;
// Where a decoded frame of each 8-bit RGB layout keeps red, green, blue and alpha (-1: none,
// so opaque).
const FRAME_CHANNELS = {
  RGBA: [0, 1, 2, 3],
  RGBX: [0, 1, 2, -1],
  BGRA: [2, 1, 0, 3],
  BGRX: [2, 1, 0, -1],
};

/** The model file the site should hold is not there; `path` names it. */
class MissingModelError extends Error {
  constructor(path) {
    super(`${path} is missing`);
    this.name = "MissingModelError";
    this.path = path;
  }
}

function missingModelHtml(path) {
  return (
    `No model to run: <code>${escapeHtml(path)}</code> is missing. ` +
    "Run <code>make repro</code> first (it trains and exports the model), then <code>make demo</code> again."
  );
}

const elements = {
  pad: document.getElementById("pad"),
  clear: document.getElementById("clear"),
  file: document.getElementById("file"),
  picker: document.getElementById("model-picker"),
  choice: document.getElementById("model-choice"),
  modelNotice: document.getElementById("model-notice"),
  answerNotice: document.getElementById("answer-notice"),
  digit: document.getElementById("digit"),
  confidence: document.getElementById("confidence"),
  source: document.getElementById("source"),
  bars: document.getElementById("bars"),
  seen: document.getElementById("seen"),
  modelInfo: document.getElementById("model-info"),
  correct: document.getElementById("correct"),
  right: document.getElementById("right"),
  labels: document.getElementById("labels"),
  feedbackStatus: document.getElementById("feedback-status"),
};
const padContext = elements.pad.getContext("2d", { willReadFrequently: true });
const seenContext = elements.seen.getContext("2d");

const models = {
  manifest: null, // {input, output, models: [{name, file, bytes}], files: {name: file}}, once loaded
  manifestLoaded: null, // the promise of the manifest
  sessions: new Map(), // model name -> Promise<InferenceSession>
  chosen: "fp32",
};
let sequence = 0;
let pendingJob = null;
let running = false;
let lastDigitJob = null; // the last picture that held a digit, re-answered on a model change
let lastAnswer = null; // {model, input, digit} of the answer shown, for a correction
let activePointer = null;
let lastPoint = null;

function setNotice(element, kind, html) {
  if (!kind) {
    element.hidden = true;
    element.innerHTML = "";
    delete element.dataset.kind;
    return;
  }
  element.hidden = false;
  element.dataset.kind = kind;
  element.innerHTML = html;
}

function escapeHtml(text) {
  const span = document.createElement("span");
  span.textContent = text;
  return span.innerHTML;
}

// --- the model ------------------------------------------------------------------------------

function configureRuntime() {
  // One thread: threads need SharedArrayBuffer, i.e. cross-origin isolation headers, and a
  // network this small answers in about a millisecond on one.
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  // The site's own copy of the binary, as an absolute URL; the bundle carries its loader, so
  // only the .wasm is named (a plain prefix would make it look for a separate loader too).
  ort.env.wasm.wasmPaths = { wasm: new URL(WASM_FILE, document.baseURI).href };
}

async function loadManifest() {
  const response = await fetch(MANIFEST_URL, { cache: "no-cache" });
  if (!response.ok) {
    throw new Error(`${MANIFEST_URL} is missing (HTTP ${response.status}); rebuild the site with make demo`);
  }
  return response.json();
}

function modelEntry(name) {
  return models.manifest.models.find((entry) => entry.name === name);
}

// Where the model is served, or would be: the manifest names the file of every model the
// page can offer, installed or not, so a missing one can be named.
function modelPath(name) {
  const file = modelEntry(name)?.file ?? models.manifest.files?.[name];
  return file ? `models/${file}` : `the ${name} model`;
}

async function openSession(name) {
  const entry = modelEntry(name);
  if (!entry) throw new MissingModelError(modelPath(name));
  const response = await fetch(`models/${entry.file}`, { cache: "no-cache" });
  if (response.status === 404) throw new MissingModelError(modelPath(name));
  if (!response.ok) throw new Error(`models/${entry.file}: HTTP ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
  });
  for (const [names, wanted] of [
    [session.inputNames, models.manifest.input],
    [session.outputNames, models.manifest.output],
  ]) {
    if (!names.includes(wanted)) {
      throw new Error(`models/${entry.file} has no tensor '${wanted}' (it has ${names.join(", ")})`);
    }
  }
  // One run on a blank image compiles the kernels, so the first stroke is as fast as the rest.
  const blank = new ort.Tensor("float32", new Float32Array(IMAGE_SIDE * IMAGE_SIDE), [1, IMAGE_SIDE, IMAGE_SIDE]);
  await session.run({ [models.manifest.input]: blank });
  return session;
}

// Each model is fetched and compiled once, when it is first needed. A load that failed is
// forgotten, so the next picture or the next choice of that model tries again (after make
// repro has written the file, say) without reloading the page.
function session(name) {
  if (!models.sessions.has(name)) {
    const opening = openSession(name);
    models.sessions.set(name, opening);
    opening.catch(() => {
      if (models.sessions.get(name) === opening) models.sessions.delete(name);
    });
  }
  return models.sessions.get(name);
}

function showModelState(name) {
  document.body.dataset.modelState = "loading";
  session(name).then(
    () => showModelReady(name),
    (error) => showModelFailure(name, error),
  );
}

function showModelReady(name) {
  if (name !== models.chosen) return;
  const entry = modelEntry(name);
  document.body.dataset.modelState = "ready";
  // A failure of another model is past; a warning about the requested one still holds.
  if (elements.modelNotice.dataset.kind === "error") setNotice(elements.modelNotice, null);
  const megabytes = (entry.bytes / 1e6).toFixed(1);
  elements.modelInfo.textContent =
    `Model ${name} (models/${entry.file}, ${megabytes} MB) · ` +
    `onnxruntime-web ${ort.env.versions.web}, WebAssembly, one thread`;
}

function showModelFailure(name, error) {
  if (name !== models.chosen) return;
  if (error instanceof MissingModelError) {
    document.body.dataset.modelState = "missing";
    setNotice(elements.modelNotice, "error", missingModelHtml(error.path));
    elements.modelInfo.textContent = "No model loaded.";
  } else {
    document.body.dataset.modelState = "error";
    setNotice(elements.modelNotice, "error", `The model could not be loaded: ${escapeHtml(error.message)}`);
    elements.modelInfo.textContent = "No model loaded.";
  }
}

function fillModelChoice(requested) {
  const names = models.manifest.models.map((entry) => entry.name);
  for (const name of names) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name;
    elements.choice.append(option);
  }
  // With one model there is nothing to choose.
  elements.picker.hidden = names.length < 2;
  if (requested && names.includes(requested)) {
    models.chosen = requested;
  } else if (requested) {
    setNotice(
      elements.modelNotice,
      "warn",
      `This site holds no <code>${escapeHtml(requested)}</code> model; showing fp32.`,
    );
  }
  elements.choice.value = models.chosen;
}

// --- answering ------------------------------------------------------------------------------

// One answer at a time (a session runs one request at a time); a picture that arrives while
// one is being answered waits, and only the newest waiting picture is kept.
function requestAnswer(job) {
  pendingJob = job;
  if (!running) drainJobs();
}

async function drainJobs() {
  running = true;
  try {
    while (pendingJob) {
      const job = pendingJob;
      pendingJob = null;
      try {
        await answer(job);
      } catch (error) {
        publish(job, { failed: true, message: error.message });
        document.body.dataset.answerState = "error";
        setNotice(elements.answerNotice, "error", escapeHtml(error.message));
      }
    }
  } finally {
    running = false;
  }
}

async function answer(job) {
  let input;
  try {
    input = toMnistForm(job.gray, job.width, job.height);
  } catch (error) {
    if (!(error instanceof BlankImageError)) throw error;
    showBlank(job, error);
    return;
  }
  lastDigitJob = job;
  drawSeen(input);
  // The model this answer comes from: the choice may change while its session loads.
  const model = models.chosen;
  let current;
  try {
    await models.manifestLoaded;
    current = await session(model);
  } catch (error) {
    clearAnswer();
    document.body.dataset.answerState = "no-model";
    setNotice(elements.answerNotice, null);
    publish(job, { input, model, message: error.message });
    return;
  }
  // A load that failed before may have succeeded now; the model notice says so.
  if (document.body.dataset.modelState !== "ready") showModelReady(model);
  const feeds = { [models.manifest.input]: new ort.Tensor("float32", input, [1, IMAGE_SIDE, IMAGE_SIDE]) };
  const outputs = await current.run(feeds);
  const probabilities = outputs[models.manifest.output].data;
  const digit = argmax(probabilities);
  showAnswer(job, digit, probabilities);
  // Measured once the answer is in the page (before the browser paints it).
  const strokeToAnswerMs = performance.now() - job.started;
  publish(job, { input, model, probabilities, digit, strokeToAnswerMs });
  reportAnswer(model, input, probabilities);
  lastAnswer = { model, input: Array.from(input), digit };
  offerCorrection();
}

// --- corrections ------------------------------------------------------------------------------

function setUpCorrections() {
  for (let digit = 0; digit <= 9; digit++) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = String(digit);
    button.dataset.label = String(digit);
    button.addEventListener("click", () => sendCorrection(digit));
    elements.labels.append(button);
  }
  elements.right.addEventListener("click", () => {
    if (lastAnswer) sendCorrection(lastAnswer.digit);
  });
  fetch(FEEDBACK_URL, { cache: "no-cache" })
    .then((response) => (response.ok ? response.json() : null))
    .then((body) => {
      if (body) showFeedbackCount(body, null);
    })
    .catch(() => {});
}

function offerCorrection() {
  elements.correct.hidden = false;
  elements.correct.querySelectorAll("button").forEach((button) => (button.disabled = false));
  document.body.dataset.feedbackState = "offered";
}

function withdrawCorrection() {
  lastAnswer = null;
  elements.correct.hidden = true;
}

// The server's counts: accepted ones are in the training data; the others wait for a person's
// review (python -m demo.feedback review) before they are.
function showFeedbackCount({ count, pending }, said) {
  const total = count + pending;
  const collected = `${total} digit${total === 1 ? "" : "s"} collected for the next training`;
  // a no-break space keeps the count with its words when the line wraps
  const waiting = pending ? `, ${pending}\u00a0of them awaiting review` : "";
  elements.feedbackStatus.textContent = `${said ? `${said} ` : ""}${collected}${waiting}.`;
}

async function sendCorrection(label) {
  if (!lastAnswer) return;
  const answered = lastAnswer;
  elements.correct.querySelectorAll("button").forEach((button) => (button.disabled = true));
  document.body.dataset.feedbackState = "sending";
  try {
    const response = await postAsPage(FEEDBACK_URL, {
      model: answered.model,
      image: answered.input,
      answer: answered.digit,
      label,
    });
    if (!response.ok) {
      const said = (await response.text()).trim();
      elements.feedbackStatus.textContent = `Not stored: ${said}`;
      document.body.dataset.feedbackState = "refused";
      return;
    }
    const body = await response.json();
    const said = body.stored
      ? label === answered.digit
        ? "Thanks: kept as a right answer."
        : `Thanks: kept as a ${label}.`
      : "Already kept.";
    showFeedbackCount(body, said);
    document.body.dataset.feedbackState = body.stored ? "stored" : "duplicate";
  } catch (error) {
    elements.feedbackStatus.textContent = `Not stored: ${error.message}`;
    document.body.dataset.feedbackState = "refused";
  }
}

// Fire and forget: the answer is on the page already, and the log is the server's affair.
function reportAnswer(model, input, probabilities) {
  postAsPage(
    ANSWERS_URL,
    { model, image: Array.from(input), probabilities: Array.from(probabilities) },
    { keepalive: true },
  ).catch(() => {});
}

// --- the page's id ----------------------------------------------------------------------------

// The id the server handed this page, asked for once, when the page first posts.
let pageId = null;

async function askForPageId() {
  const response = await fetch(SESSION_URL, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: "{}",
  });
  if (!response.ok) throw new Error((await response.text()).trim());
  return (await response.json()).page;
}

function currentPageId(fresh) {
  if (fresh || !pageId) {
    const asked = askForPageId();
    pageId = asked;
    // a refusal is not kept: the next post asks again
    asked.catch(() => {
      if (pageId === asked) pageId = null;
    });
  }
  return pageId;
}

// POST fields as JSON with the page's id; asks for a new id once when the server has
// forgotten this one (it restarted), then posts again.
async function postAsPage(url, fields, options = {}) {
  const send = async (page) =>
    fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ page, ...fields }),
      ...options,
    });
  let response = await send(await currentPageId(false));
  if (response.status === 400 && (await response.clone().text()).includes(UNKNOWN_PAGE)) {
    response = await send(await currentPageId(true));
  }
  return response;
}

function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

function showAnswer(job, digit, probabilities) {
  elements.digit.textContent = String(digit);
  elements.digit.dataset.digit = String(digit);
  elements.confidence.textContent = `${(probabilities[digit] * 100).toFixed(1)} % sure`;
  elements.source.textContent = job.name ? `from ${job.name}` : "from your drawing";
  elements.bars.querySelectorAll("li").forEach((row, index) => {
    const share = probabilities[index];
    row.querySelector(".fill").style.width = `${(share * 100).toFixed(2)}%`;
    row.querySelector(".value").textContent = `${(share * 100).toFixed(1)} %`;
    row.classList.toggle("top", index === digit);
  });
  setNotice(elements.answerNotice, null);
  document.body.dataset.answerState = "shown";
}

function clearAnswer() {
  withdrawCorrection();
  elements.digit.textContent = "–";
  delete elements.digit.dataset.digit;
  elements.confidence.textContent = "";
  elements.source.textContent = "";
  elements.bars.querySelectorAll("li").forEach((row) => {
    row.querySelector(".fill").style.width = "0";
    row.querySelector(".value").textContent = "";
    row.classList.remove("top");
  });
}

function showBlank(job, error) {
  // Nothing to re-answer on a model change: the page now shows this blank picture.
  lastDigitJob = null;
  clearAnswer();
  drawSeen(new Float32Array(IMAGE_SIDE * IMAGE_SIDE));
  document.body.dataset.answerState = "blank";
  if (job.name) {
    setNotice(elements.answerNotice, "warn", `${escapeHtml(job.name)}: ${escapeHtml(error.message)}.`);
  } else {
    setNotice(elements.answerNotice, "info", "The canvas is blank: draw a digit in the box.");
  }
  publish(job, { blank: true, message: error.message });
}

function drawSeen(input) {
  const image = seenContext.createImageData(IMAGE_SIDE, IMAGE_SIDE);
  for (let i = 0; i < input.length; i++) {
    const level = Math.round(input[i]);
    image.data.set([level, level, level, 255], i * 4);
  }
  seenContext.putImageData(image, 0, 0);
}

// `fields.model` is the model that computed the answer (or would have, had it loaded); a
// picture no model was asked about has none.
function publish(job, fields) {
  sequence += 1;
  window.lastResult = {
    sequence,
    source: job.name ? "file" : "canvas",
    name: job.name ?? null,
    model: null,
    digit: null,
    probabilities: null,
    input: null,
    strokeToAnswerMs: null,
    blank: false,
    failed: false,
    message: null,
    ...fields,
    ...(fields.input ? { input: Array.from(fields.input) } : {}),
    ...(fields.probabilities ? { probabilities: Array.from(fields.probabilities) } : {}),
  };
}

// --- the drawing pad ------------------------------------------------------------------------

function clearPad() {
  padContext.fillStyle = "#fff";
  padContext.fillRect(0, 0, elements.pad.width, elements.pad.height);
}

function padPicture(started) {
  const { width, height } = elements.pad;
  const rgba = padContext.getImageData(0, 0, width, height).data;
  return { ...pictureFromRGBA(rgba, width, height), started, name: null };
}

function padPoint(event) {
  const box = elements.pad.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) * elements.pad.width) / box.width,
    y: ((event.clientY - box.top) * elements.pad.height) / box.height,
  };
}

function strokeTo(point) {
  padContext.beginPath();
  padContext.moveTo(lastPoint.x, lastPoint.y);
  padContext.lineTo(point.x, point.y);
  padContext.stroke();
  lastPoint = point;
}

function setUpPad() {
  padContext.strokeStyle = "#000";
  padContext.lineWidth = elements.pad.width * PEN_WIDTH_FRACTION;
  padContext.lineCap = "round";
  padContext.lineJoin = "round";
  clearPad();
  elements.pad.addEventListener("pointerdown", (event) => {
    if (event.pointerType === "mouse" && event.button !== 0) return;
    event.preventDefault();
    elements.pad.setPointerCapture(event.pointerId);
    activePointer = event.pointerId;
    lastPoint = padPoint(event);
    strokeTo(lastPoint); // a tap leaves a dot
  });
  elements.pad.addEventListener("pointermove", (event) => {
    if (event.pointerId !== activePointer) return;
    const points = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const point of points.length ? points : [event]) strokeTo(padPoint(point));
  });
  const endStroke = (event) => {
    if (event.pointerId !== activePointer) return;
    const started = performance.now();
    activePointer = null;
    requestAnswer(padPicture(started));
  };
  elements.pad.addEventListener("pointerup", endStroke);
  elements.pad.addEventListener("pointercancel", endStroke);
  elements.clear.addEventListener("click", () => {
    clearPad();
    lastDigitJob = null;
    requestAnswer(padPicture(performance.now()));
  });
}

// --- files ----------------------------------------------------------------------------------

async function openFile(file) {
  const started = performance.now();
  try {
    await answerFile(file, started);
  } catch (error) {
    // Anything else that goes wrong with a file is still about that file: one line on the page.
    const kind = error?.name ?? "Error";
    showFileProblem(file.name, `cannot open the image (${kind}: ${firstLine(error?.message ?? error)})`);
  }
}

async function answerFile(file, started) {
  const png = await readPngHeader(file);
  // A PNG says its size in its header, so a decompression bomb is refused before any
  // decoding; other formats are only measured once decoded.
  if (png && png.width * png.height > MAX_IMAGE_PIXELS) {
    showFileProblem(file.name, tooLargeMessage(png.width, png.height));
    return;
  }
  let decoded;
  try {
    decoded = await decodePixels(file, png);
  } catch {
    showFileProblem(file.name, "not an image the browser can decode; expected a PNG");
    return;
  }
  const { rgba, width, height } = decoded;
  if (width * height > MAX_IMAGE_PIXELS) {
    showFileProblem(file.name, tooLargeMessage(width, height));
    return;
  }
  let picture;
  try {
    picture = pictureFromRGBA(rgba, width, height, png?.hasAlpha);
  } catch (error) {
    if (!(error instanceof BlankImageError)) throw error;
    showBlank({ name: file.name }, error);
    return;
  }
  // The answer is about the file now, not about an old drawing.
  clearPad();
  requestAnswer({ ...picture, started, name: file.name });
}

// A PNG's size and whether Pillow opens it with transparency, from the chunks before its
// image data; null for a file that is not a PNG.
async function readPngHeader(file) {
  const head = new Uint8Array(await file.slice(0, PNG_HEADER_BYTES).arrayBuffer());
  if (head.length < PNG_HEADER_BYTES) return null;
  if (PNG_SIGNATURE.some((byte, i) => head[i] !== byte) || chunkType(head, 12) !== "IHDR") return null;
  const view = new DataView(head.buffer);
  const width = view.getUint32(16); // big-endian, as every PNG integer
  const height = view.getUint32(20);
  const [bitDepth, colourType] = [head[24], head[25]];
  let hasAlpha = PNG_ALPHA_COLOUR_TYPES.includes(colourType);
  const transparentColour =
    PNG_TRNS_COLOUR_TYPES.includes(colourType) || (colourType === PNG_GREY && bitDepth === 1);
  // A tRNS chunk, if any, comes before the first IDAT; each chunk is its 4-byte length,
  // 4-byte type, data and 4-byte CRC.
  let offset = PNG_HEADER_BYTES;
  while (!hasAlpha && transparentColour && offset + 8 <= file.size) {
    const chunk = new Uint8Array(await file.slice(offset, offset + 8).arrayBuffer());
    const type = chunkType(chunk, 4);
    if (type === "IDAT" || type === "IEND") break;
    hasAlpha = type === "tRNS";
    offset += 12 + new DataView(chunk.buffer).getUint32(0);
  }
  return { width, height, hasAlpha };
}

function chunkType(bytes, offset) {
  return String.fromCharCode(...bytes.subarray(offset, offset + 4));
}

// The file's pixels as stored, {rgba, width, height}: no colour management and no
// premultiplied alpha, as Pillow reads them.
async function decodePixels(file, png) {
  return (png && (await decodeAsStored(file))) ?? decodeOnCanvas(file);
}

// Chromium's 2D canvas holds premultiplied pixels, which loses most of the colour of a
// nearly transparent pixel, whatever createImageBitmap was asked; a frame of WebCodecs'
// ImageDecoder holds the PNG's own bytes. Null where there is no such decoder or frame.
async function decodeAsStored(file) {
  if (typeof ImageDecoder === "undefined" || !(await ImageDecoder.isTypeSupported("image/png"))) {
    return null;
  }
  const decoder = new ImageDecoder({
    data: await file.arrayBuffer(),
    type: "image/png",
    colorSpaceConversion: "none",
    premultiplyAlpha: "none",
  });
  try {
    const { image: frame } = await decoder.decode();
    try {
      const order = FRAME_CHANNELS[frame.format];
      if (!order) return null;
      const width = frame.displayWidth;
      const height = frame.displayHeight;
      const rect = { x: 0, y: 0, width, height };
      const bytes = new Uint8Array(frame.allocationSize({ rect }));
      // Copied in the frame's own layout: Chromium converts to another through premultiplied
      // alpha, with the canvas's loss.
      const [{ offset, stride }] = await frame.copyTo(bytes, { rect });
      const rgba = new Uint8ClampedArray(width * height * 4);
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          const from = offset + y * stride + x * 4;
          const to = (y * width + x) * 4;
          for (let channel = 0; channel < 4; channel++) {
            const source = order[channel];
            rgba[to + channel] = source < 0 ? 255 : bytes[from + source];
          }
        }
      }
      return { rgba, width, height };
    } finally {
      frame.close();
    }
  } finally {
    decoder.close();
  }
}

async function decodeOnCanvas(file) {
  const bitmap = await createImageBitmap(file, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const { width, height } = bitmap;
  try {
    // Too large to be worth drawing; the caller refuses it by its size.
    if (width * height > MAX_IMAGE_PIXELS) return { rgba: null, width, height };
    const canvas = new OffscreenCanvas(width, height);
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    return { rgba: context.getImageData(0, 0, width, height).data, width, height };
  } finally {
    bitmap.close();
  }
}

function firstLine(text) {
  const line = String(text ?? "").trim().split("\n")[0];
  return line || "no message";
}

function showFileProblem(name, message) {
  // Nothing to re-answer on a model change: the page now shows this file's problem.
  lastDigitJob = null;
  clearAnswer();
  document.body.dataset.answerState = "error";
  setNotice(elements.answerNotice, "warn", `${escapeHtml(name)}: ${escapeHtml(message)}.`);
  publish({ name }, { failed: true, message });
}

function setUpFiles() {
  elements.file.addEventListener("change", () => {
    const [file] = elements.file.files;
    if (file) openFile(file);
    elements.file.value = ""; // choosing the same file again is a new request
  });
  // The whole page is the drop target; the browser would otherwise open the file itself.
  let depth = 0;
  document.addEventListener("dragenter", (event) => {
    event.preventDefault();
    depth += 1;
    document.body.classList.add("dropping");
  });
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) document.body.classList.remove("dropping");
  });
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    document.body.classList.remove("dropping");
    const [file] = event.dataTransfer?.files ?? [];
    if (file) {
      openFile(file);
    } else {
      showFileProblem("The drop", "held no file; expected a PNG");
    }
  });
}

// --- start ----------------------------------------------------------------------------------

function setUpBars() {
  for (let digit = 0; digit < 10; digit++) {
    const row = document.createElement("li");
    row.innerHTML = `<span class="label">${digit}</span><span class="track"><span class="fill"></span></span><span class="value"></span>`;
    elements.bars.append(row);
  }
}

function start() {
  configureRuntime();
  setUpBars();
  setUpPad();
  setUpFiles();
  setUpCorrections();
  const requested = new URLSearchParams(location.search).get("model");
  models.manifestLoaded = loadManifest().then((manifest) => {
    models.manifest = manifest;
    fillModelChoice(requested);
    if (!modelEntry(models.chosen)) throw new MissingModelError(modelPath(models.chosen));
  });
  models.manifestLoaded.then(
    () => showModelState(models.chosen),
    (error) => showModelFailure(models.chosen, error),
  );
  elements.choice.addEventListener("change", () => {
    models.chosen = elements.choice.value;
    const url = new URL(location.href);
    url.searchParams.set("model", models.chosen);
    history.replaceState(null, "", url);
    showModelState(models.chosen);
    if (lastDigitJob) requestAnswer({ ...lastDigitJob, started: performance.now() });
  });
  // The pad starts empty: say so, through the same blank test every picture goes through.
  requestAnswer(padPicture(performance.now()));
}

start();
