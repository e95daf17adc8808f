// Headless Chromium (Debian's chromium, driven by playwright-core) over the export_web page, served over http from
// this process (browsers load neither modules nor wasm from file://). For each case of reference.py's cases.json:
//   tensor: the page's window.deeplens.detectTensor on the very tensor onnx_infer.py made (cv2), timed --repeat times
//   file:   the image file itself through the page's file input (its own decode, canvas resize and drawing)
// and a file that is no image (the page must say so). Then the proof's runs with the page's own onnxruntime-web (the
// module and wasm files beside it): reference.py's network.onnx on each tensor, its postprocessing.onnx on each
// synthetic case. Prints one JSON line per image, one {"proof": ...} line, then one {"summary": ...} line:
//   {"image", "tensor": {"detections": [[class, score, xmin, ymin, xmax, ymax], ...], "ms": [first, ...repeats]},
//    "file": {"detections": [...], "shown": n, "ms": m}}
//   {"proof": {"networks": [[class_prob values, box_offsets values], ...], "detections": [[[class, score, ...]], ...]}}
// Usage: node tests/browser/run_page.mjs --web DIR --cases DIR [--repeat 5] [--chromium /usr/bin/chromium]
//        [--screenshot page.png]
import { createServer } from "node:http";
import { readFile, stat, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { resolve, join, extname, sep } from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const { values: args } = parseArgs({
  options: {
    web: { type: "string" },
    cases: { type: "string" },
    repeat: { type: "string", default: "5" },
    chromium: { type: "string", default: process.env.CHROMIUM || "/usr/bin/chromium" },
    screenshot: { type: "string" },
    threads: { type: "boolean", default: false }, // serve with COOP/COEP: cross-origin isolated, wasm threads
  },
});
if (!args.web || !args.cases) {
  console.error("usage: node run_page.mjs --web EXPORT_WEB_DIR --cases CASES_DIR [--repeat N] [--chromium PATH]");
  process.exit(2);
}
const ROOTS = { web: resolve(args.web), cases: resolve(args.cases) };
const TYPES = {
  ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json",
  ".wasm": "application/wasm", ".onnx": "application/octet-stream", ".bin": "application/octet-stream",
  ".md": "text/plain",
};

const server = createServer(async (request, response) => {
  const [, root, ...rest] = decodeURIComponent(new URL(request.url, "http://x").pathname).split("/");
  const base = ROOTS[root];
  const path = base && resolve(join(base, ...rest));
  const headers = args.threads
    ? { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp" } : {};
  try {
    if (!path || !(path === base || path.startsWith(base + sep)) || !(await stat(path)).isFile()) throw new Error();
    response.writeHead(200, { "Content-Type": TYPES[extname(path)] || "application/octet-stream", ...headers });
    response.end(await readFile(path));
  } catch {
    response.writeHead(404, headers);
    response.end("not found");
  }
});
await new Promise((done) => server.listen(0, "127.0.0.1", done));
const origin = `http://127.0.0.1:${server.address().port}`;

const reference = JSON.parse(await readFile(join(ROOTS.cases, "cases.json"), "utf8"));
const { cases } = reference;
const browser = await chromium.launch({
  executablePath: args.chromium,
  args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
});
let failed = false;
try {
  const page = await browser.newPage();
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("requestfailed", (request) => problems.push(`request failed: ${request.url()}`));
  page.on("request", (request) => {
    if (!request.url().startsWith(origin)) problems.push(`request outside the page's folder: ${request.url()}`);
  });
  await page.goto(`${origin}/web/index.html`);
  const info = await page.evaluate(() => window.deeplens.ready);
  const version = browser.version();
  const repeat = Number(args.repeat);
  const timed = [];
  for (const item of cases) {
    const tensor = await page.evaluate(
      async ({ url, repeat }) => {
        const data = new Float32Array(await (await fetch(url)).arrayBuffer());
        const first = await window.deeplens.detectTensor(data);
        const ms = [first.ms];
        for (let i = 0; i < repeat; i++) ms.push((await window.deeplens.detectTensor(data)).ms);
        return { detections: first.detections, ms };
      },
      { url: `${origin}/cases/${item.tensor}`, repeat },
    );
    const before = await page.evaluate(() => window.deeplens.count);
    await page.setInputFiles("#file", item.path);
    await page.waitForFunction((count) => window.deeplens.count > count, before);
    const last = await page.evaluate(() => window.deeplens.last);
    if (last.error) throw new Error(`${item.image}: ${last.error}`);
    const file = { detections: last.detections, shown: last.shown.length, ms: last.ms };
    timed.push(...tensor.ms.slice(1));
    console.log(JSON.stringify({ image: item.image, tensor, file }));
  }
  if (args.screenshot) await page.screenshot({ path: args.screenshot, fullPage: true });
  const proof = await page.evaluate(runProof, {
    base: `${origin}/cases/`,
    runtime: `${origin}/web/ort.wasm.min.mjs`,
    tensors: cases.map((item) => item.tensor),
    input: reference.contract.input,
    inputShape: reference.contract.input_shape,
    networkOutputs: reference.network_outputs,
    postprocessingInputs: reference.postprocessing_inputs,
    synthetic: reference.synthetic,
  });
  console.log(JSON.stringify({ proof }));
  // A file that is no image: the page says so, as an error, and keeps working.
  const notImage = join(tmpdir(), `not-an-image-${process.pid}.jpg`);
  await writeFile(notImage, "this is text");
  const before = await page.evaluate(() => window.deeplens.count);
  await page.setInputFiles("#file", notImage);
  await page.waitForFunction((count) => window.deeplens.count > count, before);
  const wrongFile = await page.evaluate(() => {
    const status = document.getElementById("status");
    return { text: status.textContent, error: status.className === "error" };
  });
  await unlink(notImage);
  if (!wrongFile.error || !wrongFile.text.includes("is not an image")) {
    problems.push(`a file that is no image: the page said "${wrongFile.text}"`);
  }
  timed.sort((a, b) => a - b);
  const median = timed.length ? timed[Math.floor(timed.length / 2)] : null;
  console.log(JSON.stringify({
    summary: { browser: `chromium ${version}`, ...info, images: cases.length, repeat, ms_median: median,
               ms_mean: timed.reduce((a, b) => a + b, 0) / (timed.length || 1), problems },
  }));
  failed = problems.length > 0;
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);

// In the page: the proof's networks and post-processing with the page's own onnxruntime-web module.
async function runProof(
  { base, runtime, tensors, input, inputShape, networkOutputs, postprocessingInputs, synthetic },
) {
  const ort = await import(runtime);
  const bytes = async (name) => (await fetch(base + name)).arrayBuffer();
  const floats = async (name) => new Float32Array(await bytes(name));
  const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
  const load = async (name) => ort.InferenceSession.create(new Uint8Array(await bytes(name)), options);
  const network = await load("network.onnx");
  const networks = [];
  for (const name of tensors) {
    const outputs = await network.run({ [input]: new ort.Tensor("float32", await floats(name), inputShape) });
    networks.push(networkOutputs.map((output) => Array.from(outputs[output].data)));
  }
  const postprocessing = await load("postprocessing.onnx");
  const detections = [];
  for (const item of synthetic) {
    const [logits, offsets] = postprocessingInputs;
    const rows = (await postprocessing.run({
      [logits]: new ort.Tensor("float32", await floats(item.class_logits), item.shape),
      [offsets]: new ort.Tensor("float32", await floats(item.box_offsets), [1, item.shape[2] * 4]),
    })).detections;
    const values = Array.from(rows.data);
    detections.push(Array.from({ length: rows.dims[0] }, (_, i) => values.slice(6 * i, 6 * i + 6)));
  }
  return { networks, detections };
}
