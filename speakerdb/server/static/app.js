"use strict";

const $ = (id) => document.getElementById(id);

// The access token lives in this variable only: never in storage, cookies or the URL.
let token = null;

class AuthError extends Error {}

// Every API request goes through here: it adds the token and turns a 401/403 into a
// request for (another) token.
async function api(url, options = {}) {
  const headers = new Headers(options.headers || {});
  if (token) headers.set("Authorization", `Bearer ${token}`);
  const r = await fetch(url, { ...options, headers });
  const body = await r.json();
  if (r.status === 401 || r.status === 403) {
    askForToken(token ? "that token was not accepted" : "");
    throw new AuthError(body.error ? body.error.message : r.statusText);
  }
  if (!r.ok) throw new Error(body.error ? body.error.message : r.statusText);
  return body;
}

const getJSON = (url) => api(url);

function askForToken(why) {
  $("auth").hidden = false;
  $("token-state").textContent = why;
  $("token-state").className = why ? "error" : "muted";
  $("token").focus();
}

function setStatus(text, isError) {
  const el = $("status");
  el.textContent = text;
  el.className = isError ? "error" : "muted";
}

async function loadHealth() {
  try {
    const h = await getJSON("/health");
    $("health").textContent =
      `model ${h.model} · ${h.counts.speakers} speakers · ${h.counts.recordings} recordings`;
  } catch (e) {
    $("health").textContent = `server not reachable: ${e.message}`;
  }
}

async function loadSpeakers() {
  const body = $("speakers");
  try {
    const { speakers } = await getJSON("/speakers");
    body.replaceChildren(...speakers.map((s) => {
      const tr = document.createElement("tr");
      for (const v of [s.label, s.recordings, s.segments, (s.seconds / 60).toFixed(2)]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.append(td);
      }
      return tr;
    }));
  } catch (e) {
    body.replaceChildren();
    setStatus(`speakers: ${e.message}`, true);
  }
}

// Scores are drawn on a common scale that always holds the threshold.
function drawResult(res) {
  const dec = $("decision");
  dec.className = res.decision;
  dec.textContent = res.decision === "match"
    ? `Match: ${res.speaker} (score ${res.score.toFixed(3)})`
    : `Unknown speaker${res.score != null ? ` (best score ${res.score.toFixed(3)})` : ""}`;
  $("threshold").textContent = res.threshold.toFixed(3);
  $("threshold-source").textContent = res.threshold_source;
  const scores = res.candidates.map((c) => c.score).concat([res.threshold]);
  const lo = Math.min(0, ...scores);
  const hi = Math.max(1, ...scores);
  const pct = (x) => `${(100 * (x - lo)) / (hi - lo)}%`;
  $("bars").replaceChildren(...res.candidates.map((c, i) => {
    const row = document.createElement("div");
    row.className = "bar";
    const name = document.createElement("span");
    name.textContent = c.speaker;
    const track = document.createElement("div");
    track.className = "track";
    const fill = document.createElement("div");
    fill.className = i === 0 && res.decision === "match" ? "fill best" : "fill";
    fill.style.width = pct(c.score);
    const thr = document.createElement("div");
    thr.className = "thr";
    thr.style.left = pct(res.threshold);
    thr.title = `threshold ${res.threshold.toFixed(3)}`;
    track.append(fill, thr);
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = c.score.toFixed(3);
    row.append(name, track, score);
    return row;
  }));
  $("result").hidden = false;
}

// One colour per voice of a diarized upload, in order of first appearance.
const VOICE_COLOURS = ["#2f6fde", "#1f8a4c", "#b45309", "#8e44ad", "#c0392b", "#16a085",
                       "#7f8c8d", "#d35400"];

function clock(s) {
  const m = Math.floor(s / 60);
  return `${m}:${(s - 60 * m).toFixed(1).padStart(4, "0")}`;
}

function drawTimeline(res) {
  const colour = {};
  res.speakers.forEach((s, i) => { colour[s.speaker] = VOICE_COLOURS[i % VOICE_COLOURS.length]; });
  $("voices").textContent = `${res.speakers.length} voice(s), ${res.speech_s.toFixed(1)} s of ` +
    `speech in ${res.duration_s.toFixed(1)} s`;
  const total = Math.max(res.duration_s, 1e-6);
  $("timeline").replaceChildren(...res.turns.map((t) => {
    const d = document.createElement("div");
    d.className = "turn";
    d.style.left = `${(100 * t.start) / total}%`;
    d.style.width = `${(100 * (t.end - t.start)) / total}%`;
    d.style.background = colour[t.speaker] || "#999";
    d.title = `${t.speaker} ${clock(t.start)}–${clock(t.end)}`;
    return d;
  }));
  $("legend").replaceChildren(...res.speakers.map((s) => {
    const item = document.createElement("span");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = colour[s.speaker];
    const score = s.score === null ? "" : ` (${s.score.toFixed(3)})`;
    item.append(sw, document.createTextNode(`${s.speaker}${score}`));
    return item;
  }));
  $("turns").replaceChildren(...res.turns.map((t) => {
    const li = document.createElement("li");
    li.textContent = `${clock(t.start)}–${clock(t.end)} ${t.speaker}`;
    return li;
  }));
  $("timeline-result").hidden = false;
}

async function identify(blob, filename) {
  const player = $("player");
  player.src = URL.createObjectURL(blob);
  player.hidden = false;
  const several = $("diarize").checked;
  setStatus(`${several ? "diarizing" : "identifying"} ${filename}…`);
  $("result").hidden = true;
  $("timeline-result").hidden = true;
  const form = new FormData();
  form.append("audio", blob, filename);
  if (several) {
    try {
      const body = await api("/diarize", { method: "POST", body: form });
      setStatus(`${filename}: ${body.turns.length} turns`);
      drawTimeline(body);
    } catch (e) {
      setStatus(e.message, true);
    }
    return;
  }
  try {
    const body = await api("/identify", { method: "POST", body: form });
    setStatus(`${filename}: ${body.candidates.length} candidates`);
    drawResult(body);
  } catch (e) {
    setStatus(e.message, true);
  }
}

// A recording (webm/ogg from MediaRecorder) decoded in the browser and written as a
// 16-bit PCM mono WAV, which the server decodes like any other upload.
function encodeWav(audioBuffer) {
  const rate = audioBuffer.sampleRate;
  const n = audioBuffer.length;
  const mono = new Float32Array(n);
  for (let ch = 0; ch < audioBuffer.numberOfChannels; ch++) {
    const data = audioBuffer.getChannelData(ch);
    for (let i = 0; i < n; i++) mono[i] += data[i] / audioBuffer.numberOfChannels;
  }
  const view = new DataView(new ArrayBuffer(44 + 2 * n));
  const text = (off, s) => { for (let i = 0; i < s.length; i++) view.setUint8(off + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * n, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true);
  view.setUint16(22, 1, true); view.setUint32(24, rate, true); view.setUint32(28, 2 * rate, true);
  view.setUint16(32, 2, true); view.setUint16(34, 16, true);
  text(36, "data"); view.setUint32(40, 2 * n, true);
  for (let i = 0; i < n; i++) {
    const s = Math.max(-1, Math.min(1, mono[i]));
    view.setInt16(44 + 2 * i, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([view], { type: "audio/wav" });
}

let recorder = null;

async function toggleRecording() {
  const button = $("record");
  if (recorder && recorder.state === "recording") {
    recorder.stop();
    return;
  }
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    setStatus("this browser cannot record audio (it needs a secure origin such as localhost)", true);
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) {
    setStatus(`microphone: ${e.message}`, true);
    return;
  }
  const chunks = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (ev) => chunks.push(ev.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((t) => t.stop());
    button.textContent = "● Record";
    button.classList.remove("recording");
    $("rec-state").textContent = "";
    try {
      const encoded = new Blob(chunks, { type: recorder.mimeType });
      const ctx = new AudioContext();
      const decoded = await ctx.decodeAudioData(await encoded.arrayBuffer());
      ctx.close();
      await identify(encodeWav(decoded), "recording.wav");
    } catch (e) {
      setStatus(`could not decode the recording: ${e.message}`, true);
    }
  };
  recorder.start();
  button.textContent = "■ Stop";
  button.classList.add("recording");
  $("rec-state").textContent = "recording…";
}

$("file").addEventListener("change", (ev) => {
  const f = ev.target.files[0];
  if (f) identify(f, f.name);
  ev.target.value = "";
});
$("record").addEventListener("click", toggleRecording);
$("refresh").addEventListener("click", () => { loadHealth(); loadSpeakers(); });
$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("token").value.trim() || null;
  $("token").value = "";
  $("token-state").textContent = token ? "token set" : "";
  $("token-state").className = "muted";
  setStatus("Choose an audio file or record a few seconds of speech.");
  loadHealth();
  loadSpeakers();
});
loadHealth();
loadSpeakers();
