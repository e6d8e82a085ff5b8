// The moksori web page: pick a member, type a text, press play.
// Speaks only the public API: GET /api/members, POST /api/texts, then the job's status URL,
// polled with a growing delay (never faster than POLL_FIRST_MS, never slower than POLL_MAX_MS).
// A text of several sentences is heard from its first sentence on, from the job's audio stream
// (GET <status URL>/audio), while the polls count its sentences; see StreamedPlayback.

const KEY_STORAGE = "moksori.apiKey";
const POLL_FIRST_MS = 250;
const POLL_MAX_MS = 2000;
const POLL_FACTOR = 1.5;
const GIVE_UP_MS = 10 * 60 * 1000; // a job still unfinished after this is reported, not polled
const NETWORK_RETRIES = 3; // consecutive failed status polls before the page gives up
const LEAD_S = 0.1; // how far ahead of the clock streamed samples start after a pause in arrival
const UNKNOWN_LENGTH = 0xffffffff; // a streamed WAV header's data size

const $ = (id) => document.getElementById(id);
const form = $("speak");
const keyBox = $("key-box");
const keyInput = $("api-key");
const memberSelect = $("member");
const textInput = $("text");
const playButton = $("play");
const progress = $("progress");
const elapsed = $("elapsed");
const errorBox = $("error");
const audio = $("audio");
const streamLine = $("stream");
const streamState = $("stream-state");
const stopButton = $("stop");
const download = $("download");

/** An API or network failure, with the API's error code when there is one. */
class Problem extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

// Plain words for the API's error codes (docs/api.md, "Error codes"), Korean first, English after.
const PLAIN = {
  network_error: "서버에 연결할 수 없습니다. 연결을 확인하고 다시 시도하세요. / Could not reach the server: check the connection and try again.",
  unauthorized: "이 서버는 API 키가 필요합니다. 위의 ‘API 키’ 칸에 입력하세요. / This server needs an API key: enter it in the API key field above.",
  invalid_api_key: "API 키가 맞지 않습니다. 키를 확인하세요. / The API key is not valid: check it and try again.",
  member_unavailable: "지금 이 목소리를 제공하는 워커가 없습니다. 다른 목소리를 고르거나 잠시 뒤 다시 시도하세요. / No worker serves this voice right now: pick another voice or try again later.",
  unknown_member: "이 목소리는 더 이상 없습니다. 페이지를 새로 고치세요. / This voice no longer exists: reload the page.",
  empty_text: "문장을 입력하세요. / Type a sentence first.",
  missing_text: "문장을 입력하세요. / Type a sentence first.",
  unspeakable_text: "읽을 수 있는 글자가 없습니다. 한글, 영문자나 숫자를 써 주세요. / Nothing in the text can be spoken: use Hangul, Latin letters or digits.",
  text_too_long: "문장이 너무 깁니다. 줄여서 다시 시도하세요. / The text is too long: shorten it.",
  request_entity_too_large: "문장이 너무 깁니다. 줄여서 다시 시도하세요. / The text is too long: shorten it.",
  rate_limited: "요청이 너무 많습니다. 잠시 뒤 다시 시도하세요. / Too many requests: wait a moment and try again.",
  too_many_queued_jobs: "이미 대기 중인 작업이 너무 많습니다. 끝날 때까지 기다리세요. / You already have too many jobs waiting: let them finish first.",
  service_unavailable: "서비스를 잠시 사용할 수 없습니다. 잠시 뒤 다시 시도하세요. / The service is unavailable for a moment: try again shortly.",
  unknown_job: "작업을 찾을 수 없습니다 (만료됨). 다시 재생을 누르세요. / The job is unknown or has expired: press play again.",
  job_failed: "음성 합성에 실패했습니다. / The synthesis failed.",
  gave_up: "작업이 너무 오래 걸려 기다리기를 멈췄습니다. / The job took too long, so the page stopped waiting.",
  audio_error: "오디오를 불러올 수 없습니다. / The audio could not be loaded.",
  no_member: "목소리를 고르세요. / Pick a voice first.",
  bad_answer: "서버의 응답을 이해할 수 없습니다. / The server's answer could not be understood.",
};

const STATUS_WORDS = {
  sending: "요청 보내는 중… / Sending…",
  queued: "대기 중… / Queued…",
  running: "합성 중… / Synthesizing…",
  done: "완료 — 재생합니다. / Done — playing.",
};
const HEARD_WORDS = "완료 — 전체 WAV를 아래에서 다시 듣거나 내려받을 수 있습니다. / Done — replay or download the whole WAV below.";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function savedKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return ""; // storage disabled: the key lives in the field only
  }
}

function saveKey(value) {
  try {
    if (value) localStorage.setItem(KEY_STORAGE, value);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    /* storage disabled: nothing to keep */
  }
}

/** The headers of an API request: what it accepts, and the API key when one is typed. */
function apiHeaders(accept, extra = {}) {
  const headers = new Headers(extra);
  headers.set("Accept", accept);
  const key = keyInput.value.trim();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  return headers;
}

/** Fetch a JSON answer of the API; throws a Problem for network errors and error answers. */
async function api(path, options = {}) {
  const headers = apiHeaders("application/json", options.headers || {});
  let response;
  try {
    response = await fetch(path, { ...options, headers, cache: "no-store" });
  } catch (err) {
    throw new Problem(0, "network_error", String(err && err.message ? err.message : err));
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const error = (body && body.error) || {};
    throw new Problem(
      response.status,
      error.code || `http_${response.status}`,
      error.message || response.statusText || `HTTP ${response.status}`,
      response.headers.get("Retry-After"),
    );
  }
  if (body === null || typeof body !== "object") {
    throw new Problem(response.status, "bad_answer", "not a JSON object");
  }
  return { response, body };
}

function showError(problem) {
  const plain = PLAIN[problem.code];
  let text = plain || `오류가 발생했습니다. / Something went wrong: ${problem.message}`;
  if (problem.retryAfter) text += ` (${problem.retryAfter} 초 뒤 / retry in ${problem.retryAfter} s)`;
  if (plain && problem.message && problem.code !== "network_error") {
    text += ` — ${problem.message}`;
  }
  errorBox.textContent = text;
  errorBox.dataset.code = problem.code;
  if (problem.code === "unauthorized" || problem.code === "invalid_api_key") {
    keyBox.open = true;
    keyInput.focus();
  }
}

function clearError() {
  errorBox.textContent = "";
  delete errorBox.dataset.code;
}

// --- Progress: the state in the live region, the elapsed seconds beside it -------------------

let ticker = null;

function startProgress() {
  const started = performance.now();
  const tick = () => {
    const seconds = (performance.now() - started) / 1000;
    elapsed.textContent = `${seconds.toFixed(1)} 초 경과 / ${seconds.toFixed(1)} s elapsed`;
  };
  tick();
  ticker = setInterval(tick, 100);
  progress.classList.add("busy");
}

/** Show a job's state; a text of several sentences also shows how many are made. */
function setStatus(status, view = {}) {
  let words = STATUS_WORDS[status] || status;
  const total = view.sentences_total;
  if (status === "running" && Number.isInteger(total) && total > 1) {
    const made = view.sentences_done;
    words = `합성 중… ${made} / ${total} 문장 / Synthesizing… ${made} / ${total} sentences`;
  }
  if (progress.textContent !== words) progress.textContent = words;
  progress.dataset.status = status;
}

function stopProgress() {
  clearInterval(ticker);
  ticker = null;
  progress.classList.remove("busy");
}

// --- Members ---------------------------------------------------------------------------------

function memberLabel(member) {
  const served =
    member.served === true
      ? "✓ 제공 중 / served"
      : member.served === false
        ? "✗ 워커 없음 / no worker"
        : "? 알 수 없음 / unknown";
  return `${member.name} (#${member.id}) — ${served}`;
}

async function loadMembers() {
  const previous = memberSelect.value;
  memberSelect.replaceChildren(new Option("불러오는 중… / Loading…", ""));
  try {
    const { body } = await api("/api/members");
    const members = Array.isArray(body.members) ? body.members : [];
    const options = members.map((member) => {
      const option = new Option(memberLabel(member), String(member.id));
      option.dataset.served = String(member.served);
      return option;
    });
    if (options.length === 0) options.push(new Option("목소리 없음 / No voices", ""));
    memberSelect.replaceChildren(...options);
    const keep = members.find((m) => String(m.id) === previous);
    const first = keep || members.find((m) => m.served !== false) || members[0];
    if (first) memberSelect.value = String(first.id);
    memberSelect.dataset.loaded = "true";
    clearError();
  } catch (problem) {
    memberSelect.replaceChildren(new Option("목록을 불러오지 못함 / Could not load", ""));
    memberSelect.dataset.loaded = "error";
    showError(problem);
  }
}

// --- A text of several sentences, heard as it is made --------------------------------------
//
// The job's audio stream (GET /api/jobs/<id>/audio) is a chunked WAV whose header gives no
// length; it starts once the first sentence is stored and its bytes are the job's WAV. Chromium
// plays it progressively from an <audio src>, but an <audio> element cannot send the API key
// (Authorization header) the page sends on every call, and MediaSource takes no WAV. A queue of
// <audio> elements for the sentences' URLs would need no key (media URLs are open or signed)
// but learns of each sentence only at the next poll and joins them with gaps of its own timing.
// So the page fetches the stream like any other call (key included), reads its samples as they
// arrive and schedules them back to back in Web Audio: what is heard is exactly the job's WAV,
// pauses included, keys or not.

let context = null; // the page's AudioContext, once Play was pressed (null without Web Audio)
let playback = null; // the StreamedPlayback of the current job, if it has one

/** Make or resume the page's AudioContext (call it in the click on Play). */
function wakeAudio() {
  try {
    context ??= new AudioContext();
    context.resume().catch(() => {}); // also after a suspend() still under way
  } catch {
    context = null; // no Web Audio: the whole WAV plays when the job is done, as for one sentence
  }
}

function stopPlayback() {
  if (playback) playback.stop();
  playback = null;
}

/** Reads a 16-bit PCM WAV as it arrives: its header once, then its samples. */
class WavReader {
  constructor() {
    this.pending = new Uint8Array(0); // bytes not used yet: a header still partial, or part of a frame
    this.format = null; // { channels, rate } once the header is read
    this.left = Infinity; // data bytes still to come (a streamed header gives no length)
  }

  /** The samples in `bytes` (after what was pending) as one Float32Array per channel, or null. */
  push(bytes) {
    let data = joined(this.pending, bytes);
    if (!this.format) {
      const start = this.header(data);
      if (start === null) {
        this.pending = data;
        return null;
      }
      data = data.subarray(start);
    }
    if (data.length > this.left) data = data.subarray(0, this.left);
    const { channels } = this.format;
    const frames = Math.floor(data.length / (2 * channels));
    const used = frames * 2 * channels;
    this.pending = data.slice(used);
    this.left -= used;
    if (!frames) return null;
    const view = new DataView(data.buffer, data.byteOffset, used);
    const samples = Array.from({ length: channels }, () => new Float32Array(frames));
    for (let frame = 0, at = 0; frame < frames; frame++) {
      for (let channel = 0; channel < channels; channel++, at += 2) {
        samples[channel][frame] = view.getInt16(at, true) / 32768;
      }
    }
    return samples;
  }

  /** Where the samples start in `data` once its header is whole (null until then); throws on
   * a file that is not a 16-bit PCM WAV. */
  header(data) {
    if (data.length < 12) return null;
    if (ascii(data, 0) !== "RIFF" || ascii(data, 8) !== "WAVE") throw new Error("not a WAV");
    const view = new DataView(data.buffer, data.byteOffset, data.length);
    let format = null;
    for (let at = 12; at + 8 <= data.length; ) {
      const id = ascii(data, at);
      const size = view.getUint32(at + 4, true);
      if (id === "data") {
        if (!format) throw new Error("WAV data before its format");
        this.format = format;
        if (size !== UNKNOWN_LENGTH && size !== 0) this.left = size;
        return at + 8;
      }
      const next = at + 8 + size + (size % 2);
      if (next > data.length) return null;
      if (id === "fmt ") {
        const tag = view.getUint16(at + 8, true);
        const channels = view.getUint16(at + 10, true);
        const bits = view.getUint16(at + 22, true);
        if (tag !== 1 || bits !== 16 || !channels) throw new Error("not 16-bit PCM");
        format = { channels, rate: view.getUint32(at + 12, true) };
      }
      at = next;
    }
    return null;
  }
}

function joined(first, second) {
  if (!first.length) return second;
  const both = new Uint8Array(first.length + second.length);
  both.set(first);
  both.set(second, first.length);
  return both;
}

function ascii(bytes, at) {
  return String.fromCharCode(...bytes.subarray(at, at + 4));
}

/** A job's audio stream played while it arrives. The line under the progress shows its state
 * (data-state: waiting, playing, ended, stopped or unavailable; data-heard: seconds heard).
 * When the stream cannot be had (no free streaming slot, a network error), the page simply
 * offers the whole WAV when the job is done; the job's own failure is reported by the polls. */
class StreamedPlayback {
  constructor(audioContext, url) {
    this.context = audioContext;
    this.output = audioContext.createGain();
    this.output.connect(audioContext.destination);
    this.sources = new Set();
    this.aborter = new AbortController();
    this.first = null; // context time the first samples start at
    this.end = 0; // context time the samples scheduled so far end at
    this.complete = false; // the stream has ended: nothing more will be scheduled
    this.state = "waiting";
    this.show("첫 문장을 기다리는 중… / Waiting for the first sentence…");
    this.ticker = setInterval(() => this.tick(), 100);
    this.read(url);
  }

  /** Whether any audio of the stream was scheduled (it is playing, or has played). */
  get started() {
    return this.first !== null;
  }

  async read(url) {
    try {
      const response = await fetch(url, {
        headers: apiHeaders("audio/wav"),
        cache: "no-store",
        signal: this.aborter.signal,
      });
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      const reader = response.body.getReader();
      const wav = new WavReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const samples = wav.push(value);
        if (samples) this.schedule(samples, wav.format.rate);
      }
    } catch (err) {
      if (this.state === "stopped") return;
      console.warn("moksori: the audio stream ended early:", err);
      if (!this.started) this.finish("unavailable");
    }
    this.complete = true;
  }

  schedule(samples, rate) {
    if (this.state === "stopped") return;
    const buffer = this.context.createBuffer(samples.length, samples[0].length, rate);
    samples.forEach((channel, index) => buffer.copyToChannel(channel, index));
    const source = this.context.createBufferSource();
    source.buffer = buffer;
    source.connect(this.output);
    const at = Math.max(this.end, this.context.currentTime + LEAD_S); // back to back, or after a gap
    source.start(at);
    source.addEventListener("ended", () => this.sources.delete(source));
    this.sources.add(source);
    if (this.first === null) this.first = at;
    this.end = at + buffer.duration;
  }

  tick() {
    if (this.first === null) return;
    const now = this.context.currentTime;
    const heard = Math.max(0, Math.min(now, this.end) - this.first);
    if (heard > 0) {
      const seconds = heard.toFixed(1);
      this.state = "playing";
      streamLine.dataset.heard = seconds;
      this.show(`▶ 준비된 문장부터 재생 중 (${seconds} 초) / Playing what is ready (${seconds} s)`);
    }
    if (this.complete && now >= this.end) this.finish("ended");
  }

  show(words) {
    streamLine.dataset.state = this.state;
    if (streamState.textContent !== words) streamState.textContent = words;
    streamLine.hidden = false;
  }

  stop() {
    if (["waiting", "playing"].includes(this.state)) this.finish("stopped");
  }

  finish(state) {
    this.state = state;
    clearInterval(this.ticker);
    this.aborter.abort();
    for (const source of this.sources) source.stop();
    this.output.disconnect();
    streamLine.dataset.state = state;
    streamLine.hidden = true;
    this.context.suspend().catch(() => {}); // resumed by the next click on Play
  }
}

// --- A job: submit, follow, play --------------------------------------------------------------

async function follow(statusUrl, onView) {
  const deadline = performance.now() + GIVE_UP_MS;
  let delay = POLL_FIRST_MS;
  let failures = 0;
  while (performance.now() < deadline) {
    await sleep(delay);
    delay = Math.min(delay * POLL_FACTOR, POLL_MAX_MS);
    let body;
    try {
      ({ body } = await api(statusUrl));
      failures = 0;
    } catch (problem) {
      if (problem.code === "rate_limited" && problem.retryAfter) {
        await sleep(Math.min(Number(problem.retryAfter) * 1000 || POLL_MAX_MS, 60000));
        continue;
      }
      const transient = problem.code === "network_error" || problem.status === 503;
      if (transient && ++failures < NETWORK_RETRIES) continue;
      throw problem;
    }
    if (body.status === "done" || body.status === "failed") return body;
    onView(body);
  }
  throw new Problem(0, "gave_up", `${GIVE_UP_MS / 60000} min`);
}

async function speak() {
  const memberId = memberSelect.value;
  const text = textInput.value;
  if (!memberId) throw new Problem(0, "no_member", "");
  if (!text.trim()) throw new Problem(0, "empty_text", "");
  setStatus("sending");
  const { response, body } = await api("/api/texts", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ member_id: Number(memberId), text }),
  });
  let result = body;
  let stream = null; // this job's StreamedPlayback, once it is known to have several sentences
  if (body.status !== "done" && body.status !== "failed") {
    setStatus(body.status || "queued");
    const statusUrl = response.headers.get("Location") || body.status_url;
    if (!statusUrl) throw new Problem(response.status, "bad_answer", "no status URL");
    result = await follow(statusUrl, (view) => {
      setStatus(view.status, view);
      if (!stream && context && view.status === "running" && view.sentences_total > 1) {
        stream = playback = new StreamedPlayback(context, `${statusUrl}/audio`);
      }
    });
  }
  if (result.status === "failed") throw new Problem(200, "job_failed", result.error || "");
  if (!result.url) throw new Problem(200, "bad_answer", "no audio URL");
  setStatus("done");
  audio.src = result.url;
  audio.load();
  download.href = result.url;
  download.hidden = false;
  if (stream && (stream.started || stream.state === "stopped")) {
    progress.textContent = HEARD_WORDS; // heard (or stopped) from the stream: not played twice
    return;
  }
  stopPlayback(); // nothing of the stream arrived in time: the whole WAV plays instead
  audio.play().catch(() => {
    // Autoplay refused (the click is too long ago): the player's own button still works.
    progress.textContent = "완료 — ▶ 버튼으로 재생하세요. / Done — press play on the player.";
  });
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (playButton.disabled) return;
  clearError();
  playButton.disabled = true;
  form.setAttribute("aria-busy", "true");
  stopPlayback();
  wakeAudio(); // here, in the click: browsers let a page start sound only from a gesture
  audio.removeAttribute("src");
  audio.load();
  download.hidden = true;
  download.removeAttribute("href");
  delete streamLine.dataset.state; // the last job's
  delete streamLine.dataset.heard;
  startProgress();
  try {
    await speak();
  } catch (problem) {
    stopPlayback();
    setStatus("error");
    progress.textContent = "";
    showError(problem instanceof Problem ? problem : new Problem(0, "bad_answer", String(problem)));
  } finally {
    stopProgress();
    playButton.disabled = false;
    form.removeAttribute("aria-busy");
  }
});

audio.addEventListener("play", stopPlayback); // the whole WAV replaces the stream's playback
stopButton.addEventListener("click", stopPlayback);

audio.addEventListener("error", () => {
  if (!audio.getAttribute("src")) return; // cleared on purpose before a new job
  showError(new Problem(0, "audio_error", audio.error ? `media error ${audio.error.code}` : ""));
});

keyInput.value = savedKey();
if (keyInput.value) keyBox.open = true;
keyInput.addEventListener("change", () => {
  saveKey(keyInput.value.trim());
  loadMembers();
});

loadMembers();
