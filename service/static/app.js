// audiosim page: query by clip (file, drop or microphone), by item id or by a tag alone; plays and exports the results.
// Two more views: the collection's duplicates (identical, then near) and its 2-D map (click a point to play it).
// Plain JavaScript, no build step. Every URL is relative, so the page works behind a proxy prefix.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  collections: [],
  maxUploadMb: null,
  duplicates: null,  // the duplicates answer shown in the Duplicates view
  map: null,         // the map answer drawn in the Map view
  mapChosen: null,   // {collection, id} of the map point last clicked
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
  fillCollections($("dup-collection"));
  fillCollections($("map-collection"));
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
  await loadTags(name);
  // Last: the info line says the collection is loaded once its tag suggestions are too.
  const seg = info.segment_s ? `, ${info.segment_s} s segments` : "";
  $("collection-info").textContent = `${info.embedder.name} · ${info.pooling} · ${info.metric}${seg} · revision ${info.revision}`;
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

// ---------------------------------------------------------------- views: Search, Duplicates, Map
// The view is in the address's fragment (#duplicates, #map), so the search's own ?c=&id= address is left as it is.
const VIEWS = ["search", "duplicates", "map"];

function viewFromHash() {
  const v = location.hash.replace(/^#/, "");
  return VIEWS.includes(v) ? v : "search";
}

function showView(name, { remember = true } = {}) {
  for (const v of VIEWS) {
    $("view-" + v).hidden = v !== name;
    $("tab-" + v).setAttribute("aria-selected", String(v === name));
  }
  // A view that shows nothing yet starts on the collection the search uses.
  if (name === "duplicates" && !state.duplicates) $("dup-collection").value = $("collection").value;
  if (name === "map" && !state.map) $("map-collection").value = $("collection").value;
  if (remember) {
    const url = location.pathname + location.search + (name === "search" ? "" : "#" + name);
    history.replaceState(history.state, "", url);
  }
}

function fillCollections(select) {
  select.innerHTML = "";
  for (const c of state.collections) {
    const opt = document.createElement("option");
    opt.value = c.name;
    opt.textContent = `${c.name} (${c.size} items)`;
    select.appendChild(opt);
  }
}

function viewMessage(id, text) {
  const box = $(id);
  box.textContent = text;
  box.className = "message error";
  box.hidden = !text;
}

function explainView(err) {
  // An error of the Duplicates or Map view: the server's own words (they name the fix), with a few set phrases.
  if (!(err instanceof ApiError)) return String(err);
  if ([401, 404, 503].includes(err.status)) return explain(err);
  if (err.status >= 500) return "The server could not answer: " + err.message;
  return err.message;
}

function number(v) {
  // Numbers as the page shows them: integers as they are, others to at most 3 decimals (0.95, 0.009).
  return Number.isInteger(v) ? String(v) : String(Number(v.toFixed(3)));
}

function extraText(obj, known) {
  // Fields this page does not know (a newer server's), shown as "name value" rather than dropped.
  const parts = [];
  for (const [key, value] of Object.entries(obj)) {
    if (known.has(key) || value === null || value === undefined) continue;
    let text;
    if (typeof value === "number") text = number(value);
    else if (typeof value === "string" || typeof value === "boolean") text = String(value);
    else text = JSON.stringify(value);
    parts.push(`${key.replace(/_/g, " ")} ${text}`);
  }
  return parts.join(" · ");
}

// ---------------------------------------------------------------- duplicates
const GROUP_ORDER = { identical: 0, near: 1 };
const GROUP_TITLE = { identical: "Identical content", near: "Near-duplicates", stretch: "Duplicated stretches" };
const MEMBER_FIELDS = new Set(["id", "path", "label", "similarity", "score", "audio_url", "offset_s", "end_s", "duration_s",
                               "file_name", "item_url", "spectrogram_url"]);
const GROUP_FIELDS = new Set(["kind", "size", "min_similarity", "members"]);
const REPORT_FIELDS = new Set(["collection", "duplicates", "threshold", "files", "groups", "identical_groups", "near_groups",
                               "seconds", "device"]);

async function findDuplicates() {
  const name = $("dup-collection").value;
  const raw = $("dup-threshold").value.trim();
  const threshold = raw === "" ? null : Number(raw);
  viewMessage("dup-message", "");
  if (raw !== "" && !(Number.isFinite(threshold) && threshold >= -1 && threshold <= 1)) {
    viewMessage("dup-message", "The threshold is a score between -1 and 1, e.g. 0.95.");
    return;
  }
  state.duplicates = null;
  $("dup-groups").innerHTML = "";  // no earlier answer stands under the wait or an error
  $("dup-summary").textContent = "";
  $("dup-busy").hidden = false;
  $("dup-run").disabled = true;
  try {
    const query = threshold === null ? "" : "?" + new URLSearchParams({ threshold: String(threshold) }).toString();
    const data = await withToken(() => api(`api/collections/${encodeURIComponent(name)}/duplicates${query}`));
    renderDuplicates(data);
  } catch (err) {
    viewMessage("dup-message", explainView(err));
  } finally {
    $("dup-busy").hidden = true;
    $("dup-run").disabled = false;
  }
}

function renderDuplicates(data) {
  state.duplicates = data;
  const groups = [...(data.duplicates || [])]
    .map((g, i) => [g, i])
    .sort(([a, i], [b, j]) => ((GROUP_ORDER[a.kind] ?? 2) - (GROUP_ORDER[b.kind] ?? 2)) || i - j)
    .map(([g]) => g);
  const identical = groups.filter((g) => g.kind === "identical").length;
  const near = groups.filter((g) => g.kind === "near").length;
  const parts = [];
  if (data.files != null) parts.push(`${data.files} files`);
  if (data.threshold != null) parts.push(`threshold ${number(data.threshold)}`);
  if (data.seconds != null) parts.push(`${number(data.seconds)} s`);
  const extra = extraText(data, REPORT_FIELDS);
  if (extra) parts.push(extra);
  const found = groups.length
    ? `${identical} group${identical === 1 ? "" : "s"} of identical files, ${near} group${near === 1 ? "" : "s"} of near-duplicates`
      + (groups.length > identical + near ? `, ${groups.length - identical - near} other` : "")
    : "No duplicates";
  $("dup-summary").textContent = `${found} · ${parts.join(" · ")}`;
  const list = $("dup-groups");
  list.innerHTML = "";
  if (!groups.length) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "No duplicates: no two files have identical content or reach the threshold.";
    list.appendChild(li);
    return;
  }
  for (const g of groups) list.appendChild(duplicateGroup(g));
}

function duplicateGroup(g) {
  const li = document.createElement("li");
  li.className = "dup-group";
  li.dataset.kind = g.kind;
  const head = document.createElement("div");
  head.className = "dup-head";
  const kind = document.createElement("span");
  kind.className = "kind";
  kind.textContent = GROUP_TITLE[g.kind] || String(g.kind || "group");
  const members = g.members || [];
  const size = document.createElement("span");
  size.className = "muted";
  size.textContent = `${g.size ?? members.length} ${g.size === 1 ? "member" : "members"}`;
  head.append(kind, size);
  if (g.kind !== "identical" && typeof g.min_similarity === "number") {
    const weakest = document.createElement("span");
    weakest.className = "muted";
    weakest.textContent = `weakest link ${g.min_similarity.toFixed(3)}`;
    head.append(weakest);
  }
  const extra = extraText(g, GROUP_FIELDS);
  if (extra) {
    const more = document.createElement("span");
    more.className = "extra muted";
    more.textContent = extra;
    head.append(more);
  }
  const ul = document.createElement("ul");
  ul.className = "dup-members";
  for (const m of members) ul.appendChild(duplicateMember(m));
  li.append(head, ul);
  return li;
}

function duplicateMember(m) {
  const li = document.createElement("li");
  li.className = "dup-member";
  if (m.id != null) li.dataset.id = m.id;
  const score = document.createElement("span");
  score.className = "score";
  const value = typeof m.similarity === "number" ? m.similarity : m.score;
  score.textContent = typeof value === "number" ? value.toFixed(3) : "–";
  score.title = "similarity to the closest other member";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = m.path || m.file_name || (m.id != null ? `item #${m.id}` : "");
  name.title = name.textContent;
  li.append(score);
  if (m.label) {
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = m.label;
    li.append(label);
  }
  li.append(name);
  const where = [];
  if (typeof m.offset_s === "number" && typeof m.end_s === "number") where.push(`@ ${m.offset_s.toFixed(2)}–${m.end_s.toFixed(2)} s`);
  else if (typeof m.offset_s === "number" && typeof m.duration_s === "number") {
    where.push(`@ ${m.offset_s.toFixed(2)}–${(m.offset_s + m.duration_s).toFixed(2)} s`);
  } else if (typeof m.offset_s === "number" && m.offset_s > 0) where.push(`@ ${m.offset_s.toFixed(2)} s`);
  const extra = extraText(m, MEMBER_FIELDS);
  if (extra) where.push(extra);
  if (where.length) {
    const more = document.createElement("span");
    more.className = "extra muted";
    more.textContent = where.join(" · ");
    li.append(more);
  }
  if (m.audio_url) {
    const audio = document.createElement("audio");
    audio.controls = true;
    audio.preload = "none";
    audio.src = relative(m.audio_url);
    li.append(audio);
  }
  return li;
}

// ---------------------------------------------------------------- map
const SVG = "http://www.w3.org/2000/svg";
const MAP_W = 800, MAP_H = 600, MAP_PAD = 14;

async function drawMap() {
  const name = $("map-collection").value;
  const raw = $("map-clusters").value.trim();
  const k = raw === "" ? null : Number(raw);
  viewMessage("map-message", "");
  if (raw !== "" && !(Number.isInteger(k) && k >= 1 && k <= 50)) {
    viewMessage("map-message", "Clusters is a whole number from 1 to 50; leave it empty to let the server choose.");
    return;
  }
  state.map = null;
  state.mapChosen = null;
  clearMap();
  $("map-busy").hidden = false;
  $("map-run").disabled = true;
  try {
    const query = k === null ? "" : "?" + new URLSearchParams({ clusters: String(k) }).toString();
    const data = await withToken(() => api(`api/collections/${encodeURIComponent(name)}/map${query}`));
    renderMap(data);
  } catch (err) {
    viewMessage("map-message", explainView(err));
  } finally {
    $("map-busy").hidden = true;
    $("map-run").disabled = false;
  }
}

function clearMap() {
  $("map-svg").replaceChildren();
  $("map-legend").innerHTML = "";
  $("map-cluster-list").innerHTML = "";
  $("map-legend-title").hidden = $("map-cluster-title").hidden = true;
  $("map-selected").hidden = true;
  $("map-player").removeAttribute("src");
  $("map-summary").textContent = "";
  $("map-hover").textContent = "Hover a point for its file; click it to play it.";
}

function pointText(data, p) {
  const cluster = data.clusters[p.cluster];
  return p.path + (p.label ? ` [${p.label}]` : "") + (p.offset_s > 0 ? ` @ ${p.offset_s.toFixed(2)} s` : "")
    + (cluster ? ` · ${cluster.name}` : "");
}

function renderMap(data) {
  state.map = data;
  clearMap();
  const by = data.coloured_by === "label" ? "label" : "cluster";
  let summary = `${data.shown} point${data.shown === 1 ? "" : "s"} · ${data.method} · coloured by ${by} · revision ${data.revision}`;
  if (data.sampled) summary += ` · a random sample of ${data.shown} of the collection's ${data.total} items (this server maps at most ${data.max_points})`;
  $("map-summary").textContent = data.points.length ? summary : "This collection holds no items yet: there is nothing to map.";
  if (!data.points.length) return;
  const xs = data.points.map((p) => p.x), ys = data.points.map((p) => p.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = (MAP_W - 2 * MAP_PAD) / (x1 - x0 || 1), sy = (MAP_H - 2 * MAP_PAD) / (y1 - y0 || 1);
  const r = data.points.length > 1500 ? 3 : data.points.length > 300 ? 4 : 6;
  const svg = $("map-svg");
  const frag = document.createDocumentFragment();
  data.points.forEach((p, i) => {
    const c = document.createElementNS(SVG, "circle");
    c.setAttribute("class", "point");
    c.setAttribute("cx", (x1 > x0 ? MAP_PAD + (p.x - x0) * sx : MAP_W / 2).toFixed(1));
    c.setAttribute("cy", (y1 > y0 ? MAP_H - MAP_PAD - (p.y - y0) * sy : MAP_H / 2).toFixed(1));
    c.setAttribute("r", String(r));
    c.setAttribute("fill", (data.legend[p.colour] || {}).colour || "#7f7f7f");
    c.dataset.id = p.id;
    c.dataset.index = i;
    const title = document.createElementNS(SVG, "title");
    title.textContent = pointText(data, p);
    c.appendChild(title);
    frag.appendChild(c);
  });
  svg.appendChild(frag);
  $("map-legend-title").textContent = by === "label" ? "Labels" : "Clusters";
  for (const e of data.legend) {
    const li = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = e.colour;
    li.append(swatch, `${e.name} (${e.count})`);
    $("map-legend").appendChild(li);
  }
  $("map-legend-title").hidden = false;
  if (by === "label") {  // coloured by label: the clusters' names are listed too
    for (const c of data.clusters) {
      const li = document.createElement("li");
      li.textContent = `${c.name} (${c.size})`;
      $("map-cluster-list").appendChild(li);
    }
    $("map-cluster-title").textContent = "Clusters (named by their commonest tags or labels)";
    $("map-cluster-title").hidden = !data.clusters.length;
  }
}

function mapPoint(ev) {
  const c = ev.target.closest && ev.target.closest("circle.point");
  return c && state.map ? [c, state.map.points[Number(c.dataset.index)]] : [null, null];
}

function choosePoint(circle, p) {
  for (const old of $("map-svg").querySelectorAll("circle.chosen")) old.classList.remove("chosen");
  circle.classList.add("chosen");
  state.mapChosen = { collection: state.map.collection, id: p.id };
  $("map-selected").hidden = false;
  $("map-current").textContent = pointText(state.map, p);
  $("map-current").dataset.id = p.id;
  const player = $("map-player");
  player.src = relative(p.audio_url);
  player.play().catch(() => { /* the browser may refuse to start playing by itself: its controls still play */ });
}

async function searchLikeThis() {
  // The search view's own search by this item's id (its results, address and history as ever).
  const chosen = state.mapChosen;
  if (!chosen) return;
  $("map-player").pause();
  if ($("collection").value !== chosen.collection) {
    $("collection").value = chosen.collection;
    await loadLabels();
  }
  showView("search", { remember: false });  // the map's history entry keeps #map: Back returns to the map
  await searchId(chosen.id);
}

function wireViews() {
  for (const v of VIEWS) $("tab-" + v).addEventListener("click", () => showView(v));
  $("dup-run").addEventListener("click", findDuplicates);
  $("dup-threshold").addEventListener("keydown", (ev) => { if (ev.key === "Enter") findDuplicates(); });
  $("map-run").addEventListener("click", drawMap);
  $("map-clusters").addEventListener("keydown", (ev) => { if (ev.key === "Enter") drawMap(); });
  const svg = $("map-svg");
  svg.addEventListener("mouseover", (ev) => {
    const [, p] = mapPoint(ev);
    if (p) $("map-hover").textContent = pointText(state.map, p);
  });
  svg.addEventListener("click", (ev) => {
    const [c, p] = mapPoint(ev);
    if (p) choosePoint(c, p);
  });
  $("map-search-like").addEventListener("click", () => searchLikeThis().catch((e) => showMessage(explain(e))));
  window.addEventListener("hashchange", () => showView(viewFromHash(), { remember: false }));
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
    showView(viewFromHash(), { remember: false });  // the entry's view: search results, or #duplicates / #map
    const done = ev.state && ev.state.result ? restore(ev.state) : fromUrl();
    done.catch((e) => showMessage(explain(e)));
  });
  wireWaveDrag();
  wireViews();
}

async function main() {
  wire();
  try {
    await loadCollections();
    await loadLabels();
    showView(viewFromHash(), { remember: false });
    await fromUrl();
  } catch (err) {
    showMessage(err instanceof ApiError ? explain(err) : String(err));
  }
  document.body.dataset.ready = "1";
}

main();
