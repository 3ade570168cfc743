// audiosim page: query by clip (file, drop or microphone), by item id or by a tag alone; plays and exports the results.
// Plain JavaScript, no build step. Every URL is relative, so the page works behind a proxy prefix.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  collections: [],
  maxUploadMb: null,
  clip: null,        // Blob of the query clip
  clipName: "",
  duration: null,    // seconds, when the browser could decode the clip
  peaks: null,       // Float32Array of per-pixel peaks for the waveform
  recorder: null,
  recordTimer: null,
  previewUrl: null,
  last: null,        // {title, result} of the results shown (what Export downloads)
};

// ---------------------------------------------------------------- API access
class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

function token() {
  return sessionStorage.getItem("audiosim_token") || "";
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token()) headers["Authorization"] = "Bearer " + token();
  let response;
  try {
    response = await fetch(path, Object.assign({}, options, { headers }));
  } catch (e) {
    throw new ApiError(0, "network", "The server cannot be reached: it may have stopped or the network is down. Try again in a moment.");
  }
  let body = null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("application/json")) body = await response.json();
  if (!response.ok) {
    const err = body && body.error ? body.error : { code: "http_error", message: response.statusText };
    const apiErr = new ApiError(response.status, err.code, err.message, response.headers.get("Retry-After"));
    apiErr.suggestions = err.suggestions || null;
    throw apiErr;
  }
  return body;
}

function explain(err) {
  if (err.code === "unknown_tag") {
    const tag = $("tag").value.trim();
    const close = err.suggestions && err.suggestions.length ? ` Did you mean ${err.suggestions.join(", ")}?` : "";
    return `There is no tag “${tag}”.${close} The Tag box suggests the tags of this collection as you type.`;
  }
  switch (err.status) {
    case 413: return "That file is too large for this server. " + err.message;
    case 415: return "That file is not audio this server can read. " + err.message;
    case 422: return "The clip could not be used. " + err.message;
    case 503: return "The server is busy" + (err.retryAfter ? `; try again in ${err.retryAfter} s` : "") + ". " + err.message;
    case 401: return "This server needs an access token. " + err.message;
    case 404: return "Not found. " + err.message;
    default: return err.message || String(err);
  }
}

function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = "message " + kind;
  box.hidden = !text;
}

async function withToken(fn) {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      const dialog = $("token-dialog");
      dialog.showModal();
      await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
      const value = $("token").value.trim();
      if (value) {
        sessionStorage.setItem("audiosim_token", value);
        // <audio> and <img> cannot send headers: the server also accepts this cookie.
        document.cookie = "audiosim_token=" + encodeURIComponent(value) + "; path=/; SameSite=Strict";
        return await fn();
      }
    }
    throw err;
  }
}

// ---------------------------------------------------------------- collections and labels
async function loadCollections() {
  const data = await withToken(() => api("api/collections"));
  state.collections = data.collections;
  state.maxUploadMb = data.max_upload_mb;
  const select = $("collection");
  select.innerHTML = "";
  for (const c of data.collections) {
    const opt = document.createElement("option");
    opt.value = c.name;
    opt.textContent = `${c.name} (${c.size} items, ${c.embedder})`;
    select.appendChild(opt);
  }
  if (!data.collections.length) showMessage("This server has no collections.");
}

async function loadLabels() {
  const name = $("collection").value;
  if (!name) return;
  const info = await api(`api/collections/${encodeURIComponent(name)}`);
  const select = $("label");
  const keep = select.value;
  select.innerHTML = '<option value="">any label</option>';
  const byName = [...info.labels].sort((a, b) => a.label.localeCompare(b.label, undefined, { numeric: true }));
  for (const l of byName) {
    const opt = document.createElement("option");
    opt.value = l.label;
    opt.textContent = `${l.label} (${l.count})`;
    select.appendChild(opt);
  }
  select.value = [...select.options].some((o) => o.value === keep) ? keep : "";
  const seg = info.segment_s ? `, ${info.segment_s} s segments` : "";
  $("collection-info").textContent = `${info.embedder.name} · ${info.pooling} · ${info.metric}${seg} · revision ${info.revision}`;
  await loadTags(name);
}

async function loadTags(name) {
  // Suggestions for the Tag box: the tags this collection holds (most frequent first), then every class name.
  const data = await api(`api/collections/${encodeURIComponent(name)}/tags`);
  const list = $("tag-list");
  list.innerHTML = "";
  const held = new Set();
  for (const t of data.tags) {
    held.add(t.name);
    const opt = document.createElement("option");
    opt.value = t.name;
    opt.label = `${t.count} in this collection`;
    list.appendChild(opt);
  }
  for (const name of data.classes) {
    if (held.has(name)) continue;
    const opt = document.createElement("option");
    opt.value = name;
    list.appendChild(opt);
  }
  const box = $("tag");
  box.disabled = !data.tagged;
  box.placeholder = data.tagged ? "e.g. Dog" : "no tags";
  box.title = data.tagged
    ? "only items carrying this classifier tag; with no clip, Search ranks the collection by it"
    : "this collection has no classifier tags (they come with the yamnet and panns embedders)";
  if (!data.tagged) box.value = "";
  updateSearchButton();
}

function updateSearchButton() {
  $("search").disabled = !(state.clip || (!$("tag").disabled && $("tag").value.trim()));
}

// ---------------------------------------------------------------- the query clip
async function useClip(blob, name) {
  state.clip = blob;
  state.clipName = name;
  state.duration = null;
  state.peaks = null;
  showMessage("");
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = URL.createObjectURL(blob);
  $("preview").src = state.previewUrl;
  const mb = blob.size / (1024 * 1024);
  $("file-info").textContent = `${name} · ${mb.toFixed(2)} MB`;
  updateSearchButton();
  try {
    const ctx = new (window.AudioContext || window.webkitAudioContext)();
    const audio = await ctx.decodeAudioData(await blob.arrayBuffer());
    ctx.close();
    state.duration = audio.duration;
    state.peaks = peaks(audio, $("wave").width);
    $("file-info").textContent = `${name} · ${audio.duration.toFixed(2)} s · ${mb.toFixed(2)} MB`;
  } catch (e) {
    // The browser cannot decode every format the server reads (aiff, caf, ...): still searchable.
  }
  $("start").value = 0;
  $("end").value = state.duration ? state.duration.toFixed(2) : "";
  $("span-box").hidden = false;
  drawWave();
}

function peaks(audio, width) {
  // Per pixel column: [peak, rms] of the first channel.
  const data = audio.getChannelData(0);
  const out = { peak: new Float32Array(width), rms: new Float32Array(width) };
  const step = Math.max(1, Math.floor(data.length / width));
  for (let x = 0; x < width; x++) {
    let m = 0, s = 0, n = 0;
    for (let i = x * step; i < Math.min(data.length, (x + 1) * step); i++) {
      const v = data[i];
      m = Math.max(m, Math.abs(v));
      s += v * v;
      n++;
    }
    out.peak[x] = m;
    out.rms[x] = n ? Math.sqrt(s / n) : 0;
  }
  return out;
}

function span() {
  const start = parseFloat($("start").value);
  const end = parseFloat($("end").value);
  return { start: isFinite(start) && start > 0 ? start : null, end: isFinite(end) && end > 0 ? end : null };
}

function drawWave() {
  const canvas = $("wave");
  const g = canvas.getContext("2d");
  const { width, height } = canvas;
  g.clearRect(0, 0, width, height);
  g.fillStyle = "#f3f1ec";
  g.fillRect(0, 0, width, height);
  if (!state.peaks) {
    g.fillStyle = "#8a8578";
    g.font = "14px sans-serif";
    g.fillText("(no waveform: the browser cannot decode this format; type the time range)", 12, height / 2);
    return;
  }
  const top = Math.max(1e-6, ...state.peaks.peak);
  for (const [series, colour] of [[state.peaks.peak, "#a9a397"], [state.peaks.rms, "#3b3a36"]]) {
    g.fillStyle = colour;
    for (let x = 0; x < width; x++) {
      const h = Math.max(1, (series[x] / top) * (height - 8));
      g.fillRect(x, (height - h) / 2, 1, h);
    }
  }
  // Dim what lies outside the chosen time range; mark its edges.
  const s = span();
  const d = state.duration;
  const x0 = ((s.start || 0) / d) * width;
  const x1 = (Math.min(s.end || d, d) / d) * width;
  g.fillStyle = "rgba(251, 250, 247, 0.72)";
  g.fillRect(0, 0, x0, height);
  g.fillRect(x1, 0, width - x1, height);
  g.fillStyle = "#c8611a";
  g.fillRect(Math.max(0, x0 - 1), 0, 2, height);
  g.fillRect(Math.min(width - 2, x1 - 1), 0, 2, height);
}

function wireWaveDrag() {
  const canvas = $("wave");
  let from = null;
  const at = (ev) => {
    const r = canvas.getBoundingClientRect();
    return Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width)) * state.duration;
  };
  canvas.addEventListener("pointerdown", (ev) => {
    if (!state.duration) return;
    from = at(ev);
    canvas.setPointerCapture(ev.pointerId);
  });
  canvas.addEventListener("pointermove", (ev) => {
    if (from === null) return;
    const to = at(ev);
    $("start").value = Math.min(from, to).toFixed(2);
    $("end").value = Math.max(from, to).toFixed(2);
    drawWave();
  });
  canvas.addEventListener("pointerup", () => {
    from = null;
    const s = span();
    if (s.end !== null && s.start !== null && s.end - s.start < 0.05) $("whole").click();
  });
}

// ---------------------------------------------------------------- microphone
async function toggleRecording() {
  const button = $("record");
  if (state.recorder) {
    state.recorder.stop();
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) {
    showMessage("The microphone is not available: " + e.message + " (the page must be opened from localhost or https).");
    return;
  }
  const chunks = [];
  const recorder = new MediaRecorder(stream);
  state.recorder = recorder;
  recorder.ondataavailable = (ev) => chunks.push(ev.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((t) => t.stop());
    clearInterval(state.recordTimer);
    state.recorder = null;
    button.textContent = "● Record";
    button.setAttribute("aria-pressed", "false");
    $("record-time").textContent = "";
    try {
      // The server reads wav/flac/ogg/mp3..., not the browser's webm: convert to a 16-bit WAV here.
      const ctx = new (window.AudioContext || window.webkitAudioContext)();
      const audio = await ctx.decodeAudioData(await new Blob(chunks).arrayBuffer());
      ctx.close();
      await useClip(encodeWav(audio), "recording.wav");
    } catch (e) {
      showMessage("The recording could not be decoded: " + e.message);
    }
  };
  const t0 = Date.now();
  state.recordTimer = setInterval(() => {
    $("record-time").textContent = ((Date.now() - t0) / 1000).toFixed(1) + " s — click Stop to finish";
  }, 100);
  recorder.start();
  button.textContent = "■ Stop";
  button.setAttribute("aria-pressed", "true");
}

function encodeWav(audio) {
  const n = audio.length;
  const mono = new Float32Array(n);
  for (let c = 0; c < audio.numberOfChannels; c++) {
    const ch = audio.getChannelData(c);
    for (let i = 0; i < n; i++) mono[i] += ch[i] / audio.numberOfChannels;
  }
  const buffer = new ArrayBuffer(44 + 2 * n);
  const v = new DataView(buffer);
  const text = (off, s) => [...s].forEach((ch, i) => v.setUint8(off + i, ch.charCodeAt(0)));
  text(0, "RIFF"); v.setUint32(4, 36 + 2 * n, true); text(8, "WAVE");
  text(12, "fmt "); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, audio.sampleRate, true); v.setUint32(28, audio.sampleRate * 2, true);
  v.setUint16(32, 2, true); v.setUint16(34, 16, true);
  text(36, "data"); v.setUint32(40, 2 * n, true);
  for (let i = 0; i < n; i++) v.setInt16(44 + 2 * i, Math.max(-1, Math.min(1, mono[i])) * 32767, true);
  return new Blob([buffer], { type: "audio/wav" });
}

// ---------------------------------------------------------------- searching
function filters() {
  return {
    collection: $("collection").value,
    k: Math.max(1, Math.min(100, parseInt($("k").value, 10) || 10)),
    label: $("label").value,
    excludeSame: $("exclude-same").checked,
    tag: $("tag").value.trim(),
  };
}

async function run(title, request, { url = null, push = true } = {}) {
  // url: the page address of this search (null: keep the current one). The results go into the history entry,
  // so Back and Forward show them again without asking the server.
  $("busy").hidden = false;
  $("search").disabled = true;
  showMessage("");
  try {
    const result = await withToken(request);
    render(title, result);
    const entry = { title, result, controls: controls() };
    const target = url === null ? location.href : url;
    if (push) history.pushState(entry, "", target); else history.replaceState(entry, "", target);
  } catch (err) {
    clearResults();  // results of an earlier search must not stand under this error
    showMessage(err instanceof ApiError ? explain(err) : String(err));
  } finally {
    $("busy").hidden = true;
    updateSearchButton();
  }
}

function controls() {
  return { collection: $("collection").value, k: $("k").value, label: $("label").value, tag: $("tag").value,
           excludeSame: $("exclude-same").checked };
}

function clearResults() {
  state.last = null;
  $("results").innerHTML = "";
  $("results-panel").hidden = true;
}

async function searchClip() {
  if (!state.clip) return;
  const f = filters();
  if (state.maxUploadMb && state.clip.size > state.maxUploadMb * 1024 * 1024) {
    showMessage(`That file is too large for this server: ${(state.clip.size / 1048576).toFixed(1)} MB, the limit is ${state.maxUploadMb} MB. Choose a shorter clip.`);
    return;
  }
  const form = new FormData();
  form.append("file", state.clip, state.clipName);
  form.append("k", f.k);
  if (f.label) form.append("label", f.label);
  if (f.tag) form.append("tag", f.tag);
  if (f.excludeSame) form.append("exclude_same_file", "true");  // an upload of a collection file skips that file
  const s = span();
  if (s.start !== null) form.append("start_s", s.start);
  if (s.end !== null && !(state.duration && Math.abs(s.end - state.duration) < 0.01)) form.append("end_s", s.end);
  const spanText = s.start !== null || (s.end !== null && state.duration && s.end < state.duration - 0.01)
    ? ` (${(s.start || 0).toFixed(2)}–${(s.end || state.duration || 0).toFixed(2)} s)` : "";
  await run(`Sounds like ${state.clipName}${spanText}`, () =>
    api(`api/collections/${encodeURIComponent(f.collection)}/search`, { method: "POST", body: form }),
    { url: "?" + new URLSearchParams({ c: f.collection }).toString() });
}

async function searchTag({ push = true } = {}) {
  // No clip: rank the collection by the tag's classifier score.
  const f = filters();
  const body = { tag: f.tag, k: f.k };
  if (f.label) body.label = [f.label];
  const params = { c: f.collection, tag: f.tag, k: String(f.k) };
  if (f.label) params.label = f.label;
  await run(`Tagged “${f.tag}”`, () =>
    api(`api/collections/${encodeURIComponent(f.collection)}/search`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }), { url: "?" + new URLSearchParams(params).toString(), push });
}

async function searchText() {
  // A description instead of a clip: collections embedded by CLAP answer it, others say why not.
  const text = $("text").value.trim();
  if (!text) {
    showMessage("Type a description of the sound first, e.g. “a dog barking”.");
    return;
  }
  const f = filters();
  const body = { text, k: f.k };
  if (f.label) body.label = [f.label];
  if (f.tag) body.tag = f.tag;
  await run(`Sounds like “${text}”`, () =>
    api(`api/collections/${encodeURIComponent(f.collection)}/search`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }), { url: "?" + new URLSearchParams({ c: f.collection }).toString() });
}

async function searchId(id, { push = true } = {}) {
  const f = filters();
  const body = { id: Number(id), k: f.k, exclude_same_file: f.excludeSame };
  if (f.label) body.label = [f.label];
  if (f.tag) body.tag = f.tag;
  const params = { c: f.collection, id: String(id), k: String(f.k) };
  if (f.label) params.label = f.label;
  if (f.tag) params.tag = f.tag;
  if (!f.excludeSame) params.same = "1";
  let title = `More like item #${id}`;
  try {
    const item = await api(`api/collections/${encodeURIComponent(f.collection)}/items/${encodeURIComponent(id)}`);
    title = `More like ${item.path}` + (item.segment ? ` @ ${item.offset_s.toFixed(2)} s` : "") + ` (#${id})`;
  } catch (e) { /* the search below reports the error */ }
  await run(title, () =>
    api(`api/collections/${encodeURIComponent(f.collection)}/search`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }), { url: "?" + new URLSearchParams(params).toString(), push });
}

function relative(url) {
  // API URLs start with the server's root path; make them relative to this page.
  const base = new URL(".", location.href).pathname.replace(/\/$/, "");
  return url.startsWith(base + "/") ? url.slice(base.length + 1) : url;
}

function render(title, result) {
  state.last = { title, result };
  $("results-panel").hidden = false;
  $("results-title").textContent = title;
  const t = result.timing;
  const parts = [`decode ${t.decode_ms.toFixed(1)} ms`, `embed ${t.embed_ms.toFixed(1)} ms`, `search ${t.search_ms.toFixed(1)} ms`];
  if (t.queue_ms) parts.unshift(`queue ${t.queue_ms.toFixed(1)} ms`);
  $("timing").textContent = `${parts.join(" · ")} · server ${t.server_ms.toFixed(1)} ms · revision ${result.revision}`;
  const list = $("results");
  list.innerHTML = "";
  const hits = result.hits || (result.results ? result.results[0] : []);
  if (!hits.length) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "No item matches these filters.";
    list.appendChild(li);
    return;
  }
  for (const h of hits) list.appendChild(card(h));
}

function card(h) {
  const li = document.createElement("li");
  li.className = "hit";
  li.dataset.id = h.id;
  const head = document.createElement("div");
  head.className = "hit-head";
  const rank = document.createElement("span");
  rank.className = "rank";
  rank.textContent = h.rank;
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = h.score.toFixed(3);
  score.title = "score";
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = h.label || "(no label)";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = h.path;
  name.title = h.path;
  const offset = document.createElement("span");
  offset.className = "offset muted";
  offset.textContent = h.end_s != null
    ? `@ ${h.offset_s.toFixed(2)}–${h.end_s.toFixed(2)} s · ${h.segments} segment${h.segments === 1 ? "" : "s"}`
    : `@ ${h.offset_s.toFixed(2)} s · ${h.duration_s.toFixed(2)} s`;
  head.append(rank, score, label, name, offset);
  if (h.tags && h.tags.length) {  // what the classifier hears, and what the hit shares with the query
    const tags = document.createElement("div");
    tags.className = "tags muted";
    const shared = new Set(h.shared_tags || []);
    tags.textContent = "tags: " + h.tags.slice(0, 4).map((t) => `${t.name} ${t.score.toFixed(2)}`).join(", ")
      + (shared.size ? ` · shared with the query: ${[...shared].slice(0, 3).join(", ")}` : "");
    head.append(tags);
  }

  const img = spectrogram(h);

  const tools = document.createElement("div");
  tools.className = "hit-tools";
  const audio = document.createElement("audio");
  audio.controls = true;
  audio.preload = "metadata";
  audio.src = relative(h.audio_url);
  const more = document.createElement("button");
  more.type = "button";
  more.className = "more";
  more.textContent = "More like this";
  more.addEventListener("click", () => searchId(h.id));
  tools.append(audio, more);
  li.append(head, img, tools);
  return li;
}

// ---------------------------------------------------------------- spectrogram with axes
const SPEC_FMIN = 20, SPEC_FMAX = 8000;  // the server's picture: log-mel, 20 Hz to 8 kHz (service/media.py)

function mel(f) {  // the Slaney mel scale librosa draws with
  return f < 1000 ? (3 * f) / 200 : 15 + Math.log(f / 1000) / (Math.log(6.4) / 27);
}

function tickTime(t) {
  return t >= 60 ? `${Math.floor(t / 60)}:${(t % 60).toFixed(1).padStart(4, "0")}` : `${t.toFixed(t < 10 ? 2 : 1)} s`;
}

function spectrogram(h) {
  // The picture of the hit's audio (a region: the whole region) with a time axis below and a frequency axis left.
  const start = h.offset_s;
  const end = h.end_s != null ? h.end_s : h.offset_s + h.duration_s;
  const fig = document.createElement("figure");
  fig.className = "spec";
  const freq = document.createElement("div");
  freq.className = "axis freq";
  freq.setAttribute("aria-label", "frequency axis");
  for (const [f, text] of [[8000, "8 kHz"], [4000, "4k"], [2000, "2k"], [1000, "1k"], [250, "250"]]) {
    const tick = document.createElement("span");
    tick.style.bottom = `${(100 * (mel(f) - mel(SPEC_FMIN))) / (mel(SPEC_FMAX) - mel(SPEC_FMIN))}%`;
    tick.textContent = text;
    freq.appendChild(tick);
  }
  const img = document.createElement("img");
  img.loading = "lazy";
  img.alt = `spectrogram of ${h.file_name}, ${start.toFixed(2)}–${end.toFixed(2)} s`;
  img.src = relative(h.spectrogram_url);
  const time = document.createElement("div");
  time.className = "axis time";
  time.setAttribute("aria-label", "time axis");
  for (const frac of [0, 0.5, 1]) {
    const tick = document.createElement("span");
    tick.style.left = `${100 * frac}%`;
    tick.textContent = tickTime(start + frac * (end - start));
    time.appendChild(tick);
  }
  fig.append(freq, img, time);
  return fig;
}

// ---------------------------------------------------------------- export
function download(name, type, text) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type }));
  a.download = name;
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

function csvCell(v) {
  const text = v == null ? "" : String(v);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function exportResults(kind) {
  // JSON: the search answer exactly as the API gave it; CSV: one row per hit (tags joined with " | ").
  if (!state.last) return;
  const { result } = state.last;
  const stem = `audiosim-${result.collection}-results`;
  if (kind === "json") {
    download(`${stem}.json`, "application/json", JSON.stringify(result, null, 2) + "\n");
    return;
  }
  const hits = result.hits || (result.results ? result.results[0] : []);
  const cols = ["rank", "score", "id", "label", "path", "offset_s", "end_s", "duration_s", "tags"];
  const rows = hits.map((h) => cols.map((c) => csvCell(c === "tags"
    ? (h.tags || []).map((t) => `${t.name} ${t.score.toFixed(2)}`).join(" | ") : h[c])).join(","));
  download(`${stem}.csv`, "text/csv", [cols.join(","), ...rows].join("\r\n") + "\r\n");
}

// ---------------------------------------------------------------- URL and history state
async function fromUrl() {
  // A shared address (?c=&id= or ?c=&tag=) runs its search again; with neither, no results are shown.
  const p = new URLSearchParams(location.search);
  if (p.get("c") && [...$("collection").options].some((o) => o.value === p.get("c"))) {
    if ($("collection").value !== p.get("c")) {
      $("collection").value = p.get("c");
      await loadLabels();
    }
  }
  if (p.get("k")) $("k").value = p.get("k");
  $("label").value = p.get("label") || "";
  $("tag").value = p.get("tag") || "";
  $("exclude-same").checked = p.get("same") !== "1";
  updateSearchButton();
  if (p.get("id") !== null) await searchId(p.get("id"), { push: false });
  else if (p.get("tag")) await searchTag({ push: false });
  else clearResults();
}

async function restore(entry) {
  // Back/Forward to a search: its results as they were shown, and the controls it ran with.
  const c = entry.controls;
  if ($("collection").value !== c.collection) {
    $("collection").value = c.collection;
    await loadLabels();
  }
  $("k").value = c.k;
  $("label").value = c.label;
  $("tag").value = c.tag;
  $("exclude-same").checked = c.excludeSame;
  showMessage("");
  render(entry.title, entry.result);
  updateSearchButton();
}

// ---------------------------------------------------------------- wiring
function wire() {
  const drop = $("drop");
  $("pick").addEventListener("click", () => $("file").click());
  drop.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") $("file").click(); });
  $("file").addEventListener("change", (ev) => {
    const f = ev.target.files[0];
    if (f) useClip(f, f.name);
  });
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    const f = ev.dataTransfer.files[0];
    if (f) useClip(f, f.name);
  });
  $("record").addEventListener("click", toggleRecording);
  $("start").addEventListener("input", drawWave);
  $("end").addEventListener("input", drawWave);
  $("whole").addEventListener("click", () => {
    $("start").value = 0;
    $("end").value = state.duration ? state.duration.toFixed(2) : "";
    drawWave();
  });
  $("preview").addEventListener("play", () => {
    const s = span();
    if (s.start !== null && Math.abs($("preview").currentTime - s.start) > 0.25 && $("preview").currentTime < s.start) $("preview").currentTime = s.start;
  });
  $("preview").addEventListener("timeupdate", () => {
    const s = span();
    if (s.end !== null && $("preview").currentTime > s.end) $("preview").pause();
  });
  $("search").addEventListener("click", () => (state.clip ? searchClip() : searchTag()));
  $("text-form").addEventListener("submit", (ev) => { ev.preventDefault(); searchText(); });
  $("tag").addEventListener("input", updateSearchButton);
  $("tag").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !$("search").disabled) $("search").click();
  });
  $("export-csv").addEventListener("click", () => exportResults("csv"));
  $("export-json").addEventListener("click", () => exportResults("json"));
  $("collection").addEventListener("change", () => loadLabels().catch((e) => showMessage(explain(e))));
  window.addEventListener("popstate", (ev) => {
    const done = ev.state && ev.state.result ? restore(ev.state) : fromUrl();
    done.catch((e) => showMessage(explain(e)));
  });
  wireWaveDrag();
}

async function main() {
  wire();
  try {
    await loadCollections();
    await loadLabels();
    await fromUrl();
  } catch (err) {
    showMessage(err instanceof ApiError ? explain(err) : String(err));
  }
  document.body.dataset.ready = "1";
}

main();
