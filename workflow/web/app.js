// The detector page: model.onnx through onnxruntime-web's wasm backend (the files beside this one), on a dropped or
// picked image or the camera. Preprocessing as onnx_infer.py: the image stretched to the input size, RGB float32
// 0-255, NCHW; the mean, box decoding and NMS are inside the model. window.deeplens is the page's API for tests.
import * as ort from "./ort.wasm.min.mjs";

const HERE = new URL("./", import.meta.url).href;
ort.env.wasm.wasmPaths = HERE; // never a CDN
ort.env.wasm.proxy = false;
// Threads need SharedArrayBuffer, which needs cross-origin isolation (COOP/COEP headers); else one thread.
ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;

const $ = (id) => document.getElementById(id);
const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"];
let session = null;
let contract = null;
let threshold = 0.5;
let busy = false;
let cameraStream = null;

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function fetchOk(name, what) {
  let response;
  try {
    response = await fetch(new URL(name, HERE));
  } catch (error) {
    throw new Error(`cannot fetch ${name} (${what}): ${error.message}`);
  }
  if (!response.ok) {
    throw new Error(`no ${name} beside the page (HTTP ${response.status}): ${what} is missing from the folder`);
  }
  return response;
}

async function load() {
  contract = await (await fetchOk("model.onnx.contract.json", "the model's contract")).json();
  const bytes = new Uint8Array(await (await fetchOk(contract.model || "model.onnx", "the model")).arrayBuffer());
  session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  threshold = contract.score_threshold ?? 0.5;
  $("threshold").value = threshold.toFixed(3);
  const info = {
    ort: ort.env.versions?.web || "?",
    threads: ort.env.wasm.numThreads,
    crossOriginIsolated: !!self.crossOriginIsolated,
    input_shape: contract.input_shape,
    labels: contract.labels,
    threshold,
  };
  $("about").textContent =
    `onnxruntime-web ${info.ort}, wasm backend, ${info.threads} thread(s); input ${contract.input_shape.join("x")} ` +
    `${contract.color_order}; classes: ${contract.labels.join(", ")}; score threshold ${threshold.toFixed(3)}` +
    (contract.score_threshold === undefined ? " (none chosen on val: 0.5)" : " (chosen on val)");
  $("camera").disabled = false;
  status("Ready: drop an image, pick one, or start the camera.");
  return info;
}

// [1, 3, H, W] float32 RGB 0-255 -> every detection of the model (class -1 rows are padding) and the ms it took.
async function detectTensor(data) {
  if (!session) throw new Error("the model is not loaded");
  const shape = contract.input_shape;
  if (data.length !== shape.reduce((a, b) => a * b, 1)) {
    throw new Error(`the input has ${data.length} values, the model takes ${shape.join("x")}`);
  }
  const start = performance.now();
  const outputs = await session.run({ [contract.input]: new ort.Tensor("float32", data, shape) });
  const ms = performance.now() - start;
  const rows = outputs[contract.output || session.outputNames[0]];
  const detections = [];
  for (let i = 0; i < rows.dims[0]; i++) {
    const row = Array.from(rows.data.slice(i * 6, i * 6 + 6));
    if (row[0] >= 0) detections.push([Math.round(row[0]), ...row.slice(1)]);
  }
  return { detections, ms };
}

// An image, video frame or canvas -> the model's input: stretched to the input size on a canvas, RGB planes.
function toTensor(source, width, height) {
  const [, , h, w] = contract.input_shape;
  const canvas = new OffscreenCanvas(w, h);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(source, 0, 0, width, height, 0, 0, w, h);
  const rgba = context.getImageData(0, 0, w, h).data;
  const data = new Float32Array(3 * h * w);
  for (let i = 0, plane = h * w; i < plane; i++) {
    data[i] = rgba[4 * i];
    data[plane + i] = rgba[4 * i + 1];
    data[2 * plane + i] = rgba[4 * i + 2];
  }
  return data;
}

function draw(source, width, height, detections) {
  const view = $("view");
  const scale = Math.min(1, 960 / width);
  view.width = Math.round(width * scale);
  view.height = Math.round(height * scale);
  const context = view.getContext("2d");
  context.drawImage(source, 0, 0, width, height, 0, 0, view.width, view.height);
  context.lineWidth = 3;
  context.font = "bold 15px system-ui, sans-serif";
  const rows = [];
  for (const [cls, score, xmin, ymin, xmax, ymax] of detections) {
    const color = COLORS[cls % COLORS.length];
    const label = `${contract.labels[cls] ?? cls} ${score.toFixed(2)}`;
    const [x, y] = [xmin * view.width, ymin * view.height];
    context.strokeStyle = color;
    context.strokeRect(x, y, (xmax - xmin) * view.width, (ymax - ymin) * view.height);
    const textWidth = context.measureText(label).width + 8;
    const top = y > 20 ? y - 20 : y;
    context.fillStyle = color;
    context.fillRect(x, top, textWidth, 20);
    context.fillStyle = "#fff";
    context.fillText(label, x + 4, top + 15);
    rows.push(
      `<tr><td>${contract.labels[cls] ?? cls}</td><td>${score.toFixed(3)}</td>` +
        `<td>${[xmin, ymin, xmax, ymax].map((v) => v.toFixed(3)).join(", ")}</td></tr>`,
    );
  }
  $("detections").innerHTML = rows.length ? `<tr><th>label</th><th>score</th><th>box</th></tr>${rows.join("")}` : "";
}

async function detectSource(source, width, height, name) {
  const { detections, ms } = await detectTensor(toTensor(source, width, height));
  const shown = detections.filter((d) => d[1] >= threshold);
  draw(source, width, height, shown);
  const result = { name, detections, shown, ms };
  window.deeplens.last = result;
  window.deeplens.count += 1;
  return result;
}

async function detectFile(file) {
  if (!session) return status("The model is not loaded yet.", true);
  if (busy) return;
  busy = true;
  try {
    stopCamera();
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch {
      window.deeplens.count += 1;
      window.deeplens.last = { name: file.name, error: "not an image" };
      return status(`${file.name} is not an image this browser can decode (JPEG, PNG, WebP...).`, true);
    }
    const result = await detectSource(bitmap, bitmap.width, bitmap.height, file.name);
    status(`${file.name}: ${result.shown.length} detection(s) at score >= ${threshold.toFixed(3)}, ` +
      `${result.ms.toFixed(1)} ms per inference`);
  } catch (error) {
    status(`Detection failed: ${error.message}`, true);
  } finally {
    busy = false;
  }
}

async function startCamera() {
  if (cameraStream) return stopCamera();
  if (!navigator.mediaDevices?.getUserMedia) {
    return status("No camera access here: browsers allow it only on localhost or https.", true);
  }
  try {
    cameraStream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (error) {
    cameraStream = null;
    return status(`Cannot start the camera: ${error.message}`, true);
  }
  const video = $("video");
  video.srcObject = cameraStream;
  await video.play();
  $("camera").textContent = "Stop camera";
  const frames = [];
  const loop = async () => {
    if (!cameraStream) return;
    if (!busy && video.videoWidth) {
      busy = true;
      try {
        const result = await detectSource(video, video.videoWidth, video.videoHeight, "camera");
        frames.push(result.ms);
        if (frames.length > 30) frames.shift();
        const mean = frames.reduce((a, b) => a + b, 0) / frames.length;
        status(`Camera: ${result.shown.length} detection(s), ${mean.toFixed(1)} ms per inference`);
      } catch (error) {
        status(`Detection failed: ${error.message}`, true);
        stopCamera();
      } finally {
        busy = false;
      }
    }
    requestAnimationFrame(loop);
  };
  requestAnimationFrame(loop);
}

function stopCamera() {
  if (!cameraStream) return;
  for (const track of cameraStream.getTracks()) track.stop();
  cameraStream = null;
  $("camera").textContent = "Start camera";
}

window.deeplens = { count: 0, last: null, detectTensor, ready: null };

$("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) detectFile(file);
  event.target.value = "";
});
$("camera").addEventListener("click", startCamera);
$("threshold").addEventListener("change", (event) => {
  const value = Number(event.target.value);
  if (value >= 0 && value <= 1) threshold = value;
});
const drop = $("drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (file) detectFile(file);
  else status("Drop an image file (not a link or text).", true);
});

window.deeplens.ready = load().catch((error) => {
  status(`Cannot load the model: ${error.message}`, true);
  throw error;
});
