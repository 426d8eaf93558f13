// The load generator: one Node process holding N WebSocket clients of one server.
//
// bench/run.py starts it (pinned to its own core) and drives it with one JSON command
// per line on stdin; each command is answered with one JSON line on stdout. Progress
// and diagnostics go to stderr. It measures everything that needs the clients' clock:
// it triggers each broadcast itself (HTTP POST from here) and times every receipt from
// the start of that request.
//
// Commands (see handlers below): connect, broadcast, ack, arm_reconnect,
// await_catchup, close, exit. It exits by itself when stdin closes or after
// --max-s seconds (default 1800), whatever it is doing.

import http from "node:http";
import readline from "node:readline";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import WebSocket from "ws";
import { io } from "socket.io-client";

const now = () => performance.now(); // ms, monotonic
// Math.max(...xs) passes every item as an argument: past about 100,000 (ten broadcasts'
// receipts at 10,000 clients) V8 runs out of stack.
const maxOf = (xs) => xs.reduce((a, b) => (b > a ? b : a), -Infinity);
const minOf = (xs) => xs.reduce((a, b) => (b < a ? b : a), Infinity);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (...args) => process.stderr.write(`[loadgen] ${args.join(" ")}\n`);

const maxArg = process.argv.indexOf("--max-s");
const MAX_S = maxArg > 0 ? Number(process.argv[maxArg + 1]) : 1800;
setTimeout(() => {
  log(`still running after ${MAX_S} s: exiting`);
  process.exit(3);
}, MAX_S * 1000).unref();

// HTTP -------------------------------------------------------------------------------
const agents = new Map();

/** One agent per purpose, so probes never queue behind the broadcast. No keep-alive:
 * a server closes idle connections after a few seconds, and a request sent on one it
 * is closing fails (a client-side race that would be counted against the server). */
function agentFor(name, maxSockets = 64) {
  if (!agents.has(name)) agents.set(name, new http.Agent({ keepAlive: false, maxSockets }));
  return agents.get(name);
}

function dropAgents() {
  for (const agent of agents.values()) agent.destroy();
  agents.clear();
}

/** A request; resolves {status, body, ms} (never rejects: errors become status 0). */
function request({ method = "GET", url, headers = {}, body = null, agent = "default", timeoutMs = 30000, maxSockets = 64 }) {
  const start = now();
  return new Promise((resolve) => {
    const options = { method, headers, agent: agentFor(agent, maxSockets), timeout: timeoutMs };
    const req = http.request(url, options, (res) => {
      const chunks = [];
      res.on("data", (chunk) => chunks.push(chunk));
      res.on("end", () =>
        resolve({
          status: res.statusCode,
          body: Buffer.concat(chunks).toString(),
          retryAfter: res.headers["retry-after"] ?? null,
          ms: now() - start,
          end: now(),
        }),
      );
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (err) => resolve({ status: 0, body: String(err.message), ms: now() - start, end: now() }));
    if (body !== null) req.write(body);
    req.end();
  });
}

// Statistics -------------------------------------------------------------------------
/** Nearest-rank percentile of an ascending array. */
function percentile(sorted, q) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

function summary(values) {
  const sorted = Float64Array.from(values).sort();
  const round = (x) => (x === null ? null : Math.round(x * 100) / 100);
  return {
    count: sorted.length,
    min_ms: round(sorted.length ? sorted[0] : null),
    p50_ms: round(percentile(sorted, 0.5)),
    p99_ms: round(percentile(sorted, 0.99)),
    max_ms: round(sorted.length ? sorted[sorted.length - 1] : null),
  };
}

function countInto(map, key) {
  map[key] = (map[key] || 0) + 1;
}

// Clients ----------------------------------------------------------------------------
/** Bench state: the clients and what is being measured right now. */
const state = {
  kind: null, // "schoolbell" | "naive" | "socketio"
  urls: [], // the server's URL, or one per process: client i talks to urls[i % length]
  clients: [],
  measuring: null, // the broadcast being timed: {seq, t0, arrivals, received}
  reconnect: null, // while a restart is being watched: per-client times
  dropped: 0, // sockets that closed when nobody asked them to
};

/** The sequence number of a bench broadcast, read from the raw bytes (no decoding, no
 * parsing, no allocation): the digits after `bench #` (Schoolbell's title) or `"seq":`. */
function quickSeq(data) {
  const marker = state.kind === "schoolbell" ? SCHOOLBELL_MARK : NAIVE_MARK;
  let i = data.indexOf(marker);
  if (i < 0) return null;
  i += marker.length;
  while (data[i] === 0x20) i += 1;
  let seq = 0;
  const start = i;
  while (data[i] >= 0x30 && data[i] <= 0x39) seq = seq * 10 + (data[i++] - 0x30);
  return i > start ? seq : null;
}
const SCHOOLBELL_MARK = Buffer.from("bench #");
const NAIVE_MARK = Buffer.from('"seq":');

/** The broadcast sequence number a message carries, or null. */
function seqOf(message) {
  if (state.kind === "schoolbell") {
    if (message.type !== "notification") return null;
    const match = /^bench #(\d+)$/.exec(message.title || "");
    return match ? Number(match[1]) : null;
  }
  return typeof message.seq === "number" ? message.seq : null;
}

class Client {
  constructor(index, options) {
    this.index = index;
    this.options = options; // {kind, url, token, group}
    this.ready = false;
    this.open = false;
    this.lastId = null; // highest notification id received (Schoolbell)
    this.ids = []; // notification ids received (Schoolbell), for receipts
    this.attempt = 0; // reconnect attempts since the last hello
    this.restarting = false; // closed with 1001: the server is coming back soon
    this.closing = false;
    this.onSettle = null; // set by connectAll: called once with (ok, reason)
    this.deferred = []; // messages of a timed broadcast, parsed after it
  }

  /** Open the socket (a new one after a reconnect). */
  connect() {
    this.ready = false;
    if (this.options.kind === "socketio") return this.connectSocketIO();
    // Schoolbell: the JWT as a subprotocol, as schoolbell.js sends it (ready at `hello`).
    const protocols =
      this.options.kind === "schoolbell" ? ["schoolbell", `schoolbell.jwt.${this.options.token}`] : [];
    const ws = new WebSocket(this.options.url, protocols, { perMessageDeflate: true, handshakeTimeout: 30000 });
    this.ws = ws;
    ws.on("open", () => {
      this.open = true;
      if (this.options.kind !== "schoolbell") this.becameReady();
    });
    // The arrival time is taken first, before decoding and parsing: the measure is the
    // server's, not this process's JSON work.
    ws.on("message", (data) => this.onMessage(data, now()));
    ws.on("error", (err) => {
      this.lastError = /Unexpected server response: (\d+)/.exec(err.message)?.[0] || err.code || err.message;
    });
    ws.on("close", (code, reason) => this.onClose(code, reason.toString()));
  }

  connectSocketIO() {
    const socket = io(this.options.url, {
      transports: ["websocket"],
      forceNew: true,
      reconnection: false,
      timeout: 30000,
    });
    this.socket = socket;
    socket.on("connect", () => {
      this.open = true;
      this.becameReady();
    });
    socket.on("alert", (payload) => this.onPayload(payload, now()));
    socket.on("connect_error", (err) => {
      this.lastError = `connect_error ${err.message}`;
      this.onClose(1006, "");
    });
    socket.on("disconnect", (reason) => this.onClose(1006, reason));
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  /** Send and resolve when the frame has been handed to the kernel. */
  sendFlushed(message) {
    return new Promise((resolve) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return resolve(null);
      this.ws.send(JSON.stringify(message), () => resolve(now()));
    });
  }

  becameReady() {
    this.ready = true;
    this.attempt = 0;
    this.restarting = false;
    if (state.reconnect) state.reconnect.helloAt[this.index] = now();
    if (this.onSettle) {
      const settle = this.onSettle;
      this.onSettle = null;
      settle(true);
    }
  }

  onMessage(data, at) {
    // While a broadcast is timed, its message is recognised without parsing and parsed
    // only afterwards: at 10,000 sockets this process's per-message work would otherwise
    // delay the arrivals it records (every message waits behind the ones before it).
    const m = state.measuring;
    if (m !== null && quickSeq(data) === m.seq) {
      this.deferred.push(data);
      this.arrived(m, at);
      return;
    }
    this.handle(data.toString(), at);
  }

  /** Parse what arrived while a broadcast was timed. */
  catchUp() {
    const buffers = this.deferred;
    this.deferred = [];
    for (const data of buffers) this.handle(data.toString(), null);
  }

  handle(text, at) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (state.kind === "schoolbell") {
      if (message.type === "hello") {
        this.send({ type: "resume", last_id: this.lastId });
        this.becameReady();
        return;
      }
      if (message.type === "notification") {
        if (!this.ids.includes(message.id)) this.ids.push(message.id);
        if (this.lastId === null || message.id > this.lastId) this.lastId = message.id;
        if (state.reconnect && !state.reconnect.got[this.index].has(message.id)) {
          state.reconnect.got[this.index].set(message.id, now());
        }
      }
    }
    if (at !== null) this.onPayload(message, at);
  }

  /** Record the arrival of the broadcast being measured. */
  onPayload(message, at) {
    const m = state.measuring;
    if (m !== null && seqOf(message) === m.seq) this.arrived(m, at);
  }

  arrived(m, at) {
    if (!Number.isNaN(m.arrivals[this.index])) return;
    m.arrivals[this.index] = at - m.t0;
    m.received += 1;
    if (m.received >= m.expected) m.done();
  }

  onClose(code, reason) {
    const wasReady = this.ready;
    this.ready = false;
    this.open = false;
    if (this.onSettle) {
      const settle = this.onSettle;
      this.onSettle = null;
      settle(false, this.lastError || `close ${code}${reason ? " " + reason : ""}`);
    }
    if (this.closing) return;
    const watch = state.reconnect;
    if (watch) {
      if (Number.isNaN(watch.closeAt[this.index])) watch.closeAt[this.index] = now();
      if (!wasReady) countInto(watch.failures, this.lastError || `close ${code}${reason ? " " + reason : ""}`);
      this.lastError = null;
      this.scheduleReconnect(code === 1001);
    } else if (wasReady) {
      state.dropped += 1;
    }
  }

  /** As static/js/schoolbell.js: after a server restart (1001), every 0.5-5 s (at
   * random) for 12 attempts; otherwise exponential backoff with
   * full jitter (1 s doubling, at most 30 s). */
  scheduleReconnect(serverRestarting) {
    if (serverRestarting) this.restarting = true;
    let ceiling = Math.min(30000, 1000 * 2 ** this.attempt);
    if (this.restarting && this.attempt < 12) ceiling = 5000;
    const delay = this.restarting ? 500 + Math.random() * (ceiling - 500) : Math.random() * ceiling;
    this.attempt += 1;
    state.reconnect.attempts += 1;
    this.timer = setTimeout(() => {
      if (state.reconnect) this.connect();
    }, delay);
  }

  close() {
    this.closing = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.disconnect();
    if (this.ws) this.ws.terminate();
  }
}

function openClients() {
  return state.clients.filter((c) => c.ready);
}

// Commands ---------------------------------------------------------------------------
/** connect {kind, url | urls, n, tokens_file?, concurrency, wait_s}: open N clients, at
 * most `concurrency` handshakes in flight; ready = open (naive), connected (socketio), or
 * `hello` received after the auth message (Schoolbell). With `urls` (one server process
 * each), client i connects to urls[i % urls.length]: the processes share the clients. */
async function connectAll(cmd) {
  state.kind = cmd.kind;
  state.dropped = 0;
  state.urls = cmd.urls || [cmd.url];
  const tokens = cmd.tokens_file ? JSON.parse(readFileSync(cmd.tokens_file, "utf8")) : [];
  state.clients = Array.from({ length: cmd.n }, (_, i) => {
    const group = i % state.urls.length;
    return new Client(i, { kind: cmd.kind, url: state.urls[group], token: tokens[i], group });
  });
  const errors = {};
  let next = 0;
  let inflight = 0;
  let settled = 0;
  let lastReady = 0;
  const start = now();
  const cpu = process.cpuUsage();
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, cmd.wait_s * 1000);
    const launch = () => {
      while (inflight < cmd.concurrency && next < cmd.n) {
        const client = state.clients[next++];
        inflight += 1;
        client.onSettle = (ok, reason) => {
          inflight -= 1;
          settled += 1;
          if (ok) lastReady = now();
          else countInto(errors, reason);
          if (settled % 1000 === 0) log(`${settled}/${cmd.n} settled`);
          if (settled === cmd.n) {
            clearTimeout(timer);
            resolve();
          } else launch();
        };
        client.connect();
      }
    };
    launch();
  });
  const ready = openClients().length;
  const unsettled = cmd.n - settled;
  if (unsettled) errors[`not ready after ${cmd.wait_s} s`] = unsettled;
  return {
    n: cmd.n,
    ready,
    failed: cmd.n - ready,
    errors,
    timed_out: settled < cmd.n,
    connect_s: ready ? (lastReady - start) / 1000 : null,
    loadgen_cpu_s: cpuSeconds(cpu),
  };
}

/** broadcast {seq, request: {method, url, headers, body}, wait_s, probes?, burst?,
 * burst_lead_ms?}: start the send request, time every client's receipt of message `seq`
 * from the request's start; meanwhile fire each probe's request every interval_ms until
 * all have it. With `burst` (e.g. 100 sign-ins): fire all of those requests at once,
 * `burst_lead_ms` before the send, and keep the probes going until every one is answered. */
async function broadcast(cmd) {
  const burst = cmd.burst || [];
  let burstPending = burst.length;
  const burstStarted = now();
  const burstResults = burst.map((req) =>
    request({ ...req, agent: "burst", maxSockets: Infinity, timeoutMs: cmd.wait_s * 1000 }).then((r) => {
      burstPending -= 1;
      return r;
    }),
  );
  let running = true;
  const active = () => running || burstPending > 0;
  const probes = burst.length ? (cmd.probes || []).map((probe) => runProbe(probe, active)) : [];
  if (burst.length) await sleep(cmd.burst_lead_ms ?? 100);
  const expected = openClients().length;
  const expectedByUrl = state.urls.map((_, group) => openClients().filter((c) => c.options.group === group).length);
  const cpu = process.cpuUsage();
  let done;
  const finished = new Promise((resolve) => (done = resolve));
  const m = {
    seq: cmd.seq,
    expected,
    received: 0,
    arrivals: new Float64Array(state.clients.length).fill(NaN),
    done: () => done(),
  };
  if (expected === 0) done();
  const timer = setTimeout(() => done(), cmd.wait_s * 1000);
  m.t0 = now();
  state.measuring = m;
  const sent = request({ ...cmd.request, agent: "send", timeoutMs: cmd.wait_s * 1000 });
  if (!burst.length) probes.push(...(cmd.probes || []).map((probe) => runProbe(probe, active)));
  await finished;
  const completeMs = now() - m.t0;
  running = false;
  clearTimeout(timer);
  state.measuring = null;
  for (const client of state.clients) client.catchUp();
  const response = await sent;
  const answered = await Promise.all(burstResults);
  const samples = await Promise.all(probes);
  const latencies = Array.from(m.arrivals).filter((x) => !Number.isNaN(x));
  const first = latencies.length ? minOf(latencies) : 0;
  const byUrl = state.urls.length > 1 ? perUrl(m, first, expectedByUrl) : null;
  let parsed = null;
  try {
    parsed = JSON.parse(response.body);
  } catch {
    parsed = response.body.slice(0, 300);
  }
  return {
    seq: cmd.seq,
    expected,
    received: m.received,
    status: response.status,
    response: parsed,
    request_ms: round2(response.ms),
    complete_ms: round2(completeMs),
    e2e: summary(latencies),
    fanout: summary(latencies.map((x) => x - first)),
    by_url: byUrl,
    probes: Object.fromEntries((cmd.probes || []).map((p, i) => [p.name, samples[i]])),
    burst: burst.length ? burstSummary(answered, burstStarted) : null,
    dropped_so_far: state.dropped,
    loadgen_cpu_s: cpuSeconds(cpu),
  };
}

/** The same broadcast per server process (several URLs): each one's clients, how many
 * received it, and their latencies (fan-out still from the first receipt of all). */
function perUrl(m, first, expected) {
  return state.urls.map((url, group) => {
    const arrivals = [];
    state.clients.forEach((client, i) => {
      if (client.options.group === group && !Number.isNaN(m.arrivals[i])) arrivals.push(m.arrivals[i]);
    });
    return {
      url,
      expected: expected[group],
      received: arrivals.length,
      e2e: summary(arrivals),
      fanout: summary(arrivals.map((x) => x - first)),
    };
  });
}

/** What a burst got: how many of each status, how many 503s lacked Retry-After, and the
 * latencies (ms) of all of them. */
function burstSummary(answered, started) {
  const statuses = {};
  let missingRetryAfter = 0;
  for (const r of answered) {
    countInto(statuses, r.status);
    if (r.status === 503 && !r.retryAfter) missingRetryAfter += 1;
  }
  const last = maxOf(answered.map((r) => r.end));
  return {
    count: answered.length,
    statuses,
    missing_retry_after: missingRetryAfter,
    ms: summary(answered.map((r) => r.ms)),
    all_answered_ms: round2(last - started),
  };
}

/** One probe: a new request every `probe.interval_ms` while `active()`, each on its own
 * connection, at most `probe.max_in_flight` at once, for at most `probe.max_s`; the
 * latencies (ms) of all of them (each started while the broadcast was in flight) and any
 * failures. Bounded, so the probes measure the server rather than overload it. */
async function runProbe(probe, active) {
  const pending = [];
  const bad = {};
  const started = now();
  const stopAt = started + (probe.max_s ?? 10) * 1000;
  let inFlight = 0;
  while (active() && now() < stopAt) {
    if (inFlight < (probe.max_in_flight ?? 5)) {
      inFlight += 1;
      const sentAt = now() - started;
      pending.push(
        request({ ...probe, agent: `probe-${probe.name}` }).then((result) => {
          inFlight -= 1;
          if (result.status < 200 || result.status >= 300) countInto(bad, result.status || result.body);
          return [round2(sentAt), round2(result.ms)];
        }),
      );
    }
    await sleep(probe.interval_ms ?? 10);
  }
  const timed = await Promise.all(pending);
  // latencies (ms), and when each request was sent (ms from the probe's start)
  return { latencies: timed.map((t) => t[1]), sent_at_ms: timed.map((t) => t[0]), bad };
}

/** ack {ids, state, poll_url, headers, expect, interval_ms, wait_s}: every open
 * client sends a receipt for each id (all at once); then poll each id's counts until
 * `expect` deliveries are at `state` or beyond. Times from the last receipt written to
 * the socket until the poll that shows them all. */
async function ack(cmd) {
  const clients = openClients();
  const loopStart = now();
  const flushed = [];
  for (const client of clients) {
    for (const id of cmd.ids) {
      if (client.ids.includes(id)) flushed.push(client.sendFlushed({ type: "ack", id, state: cmd.state }));
    }
  }
  const loopMs = now() - loopStart;
  const times = (await Promise.all(flushed)).filter((t) => t !== null);
  const lastSent = times.length ? maxOf(times) : now();
  const results = {};
  const deadline = now() + cmd.wait_s * 1000;
  for (const id of cmd.ids) {
    results[id] = await pollCounts(cmd, id, lastSent, deadline);
  }
  return {
    acks_sent: times.length,
    send_loop_ms: round2(loopMs),
    last_sent_after_ms: round2(lastSent - loopStart),
    results,
  };
}

const FORWARD = { delivered: ["delivered", "read", "acknowledged"], read: ["read", "acknowledged"], acknowledged: ["acknowledged"] };

async function pollCounts(cmd, id, since, deadline) {
  let polls = 0;
  let counts = null;
  while (now() < deadline) {
    const started = now();
    const result = await request({ url: cmd.poll_url.replace("{id}", id), headers: cmd.headers, agent: "poll" });
    polls += 1;
    if (result.status === 200) {
      counts = JSON.parse(result.body).counts;
      const reached = FORWARD[cmd.state].reduce((sum, s) => sum + (counts[s] || 0), 0);
      if (reached >= cmd.expect) {
        return { ok: true, recorded_ms: round2(result.end - since), polls, counts };
      }
    }
    await sleep(Math.max(0, cmd.interval_ms - (now() - started)));
  }
  return { ok: false, recorded_ms: null, polls, counts };
}

/** arm_reconnect: from now on a closed client reconnects like the browser client, and
 * each client's close, hello and notification times are kept. */
function armReconnect() {
  dropAgents();
  const n = state.clients.length;
  state.reconnect = {
    armedAt: now(),
    closeAt: new Float64Array(n).fill(NaN),
    helloAt: new Float64Array(n).fill(NaN),
    got: Array.from({ length: n }, () => new Map()),
    attempts: 0,
    failures: {},
  };
  return { armed: n };
}

/** await_catchup {id, wait_s}: the server is back; wait until every client has
 * reconnected and received notification `id` (by replay). Times from the first close. */
async function awaitCatchup(cmd) {
  const watch = state.reconnect;
  const serverUp = now();
  const cpu = process.cpuUsage();
  const caught = () => watch.got.filter((got) => got.has(cmd.id)).length;
  const deadline = now() + cmd.wait_s * 1000;
  while (caught() < state.clients.length && now() < deadline) await sleep(50);
  const closes = Array.from(watch.closeAt).filter((x) => !Number.isNaN(x));
  const firstClose = closes.length ? minOf(closes) : serverUp;
  const hellos = Array.from(watch.helloAt).filter((x) => !Number.isNaN(x));
  const caughtAt = watch.got.map((got) => got.get(cmd.id)).filter((x) => x !== undefined);
  const result = {
    n: state.clients.length,
    closed: closes.length,
    reconnected: hellos.length,
    caught_up: caughtAt.length,
    server_up_after_first_close_s: round2((serverUp - firstClose) / 1000),
    all_reconnected_s: hellos.length ? round2((maxOf(hellos) - firstClose) / 1000) : null,
    all_caught_up_s: caughtAt.length ? round2((maxOf(caughtAt) - firstClose) / 1000) : null,
    caught_up_after_server_up_s: caughtAt.length ? round2((maxOf(caughtAt) - serverUp) / 1000) : null,
    caught_up_p50_s: round2((percentile(caughtAt.map((t) => t - firstClose).sort((a, b) => a - b), 0.5) ?? 0) / 1000),
    attempts: watch.attempts,
    failed_attempts: watch.failures,
    loadgen_cpu_s: cpuSeconds(cpu),
  };
  state.reconnect = null;
  return result;
}

/** close: drop every client (no close handshake: the server sees the socket end). */
async function closeAll() {
  const n = state.clients.length;
  state.reconnect = null;
  for (const client of state.clients) client.close();
  state.clients = [];
  dropAgents();
  await sleep(200);
  return { closed: n };
}

function round2(x) {
  return Math.round(x * 100) / 100;
}

function cpuSeconds(since) {
  const used = process.cpuUsage(since);
  return round2((used.user + used.system) / 1e6);
}

const HANDLERS = {
  connect: connectAll,
  broadcast,
  ack,
  arm_reconnect: armReconnect,
  await_catchup: awaitCatchup,
  close: closeAll,
  exit: () => process.exit(0),
};

// Main loop: one command at a time, one JSON reply line each. -------------------------
const lines = readline.createInterface({ input: process.stdin });
const queue = [];
let busy = false;

async function drain() {
  if (busy) return;
  busy = true;
  while (queue.length) {
    const cmd = queue.shift();
    let reply;
    try {
      const handler = HANDLERS[cmd.cmd];
      if (!handler) throw new Error(`unknown command ${cmd.cmd}`);
      reply = { cmd: cmd.cmd, ok: true, ...(await handler(cmd)) };
    } catch (err) {
      reply = { cmd: cmd.cmd, ok: false, error: String(err && err.stack ? err.stack : err) };
    }
    process.stdout.write(JSON.stringify(reply) + "\n");
  }
  busy = false;
}

lines.on("line", (line) => {
  if (!line.trim()) return;
  queue.push(JSON.parse(line));
  drain();
});
lines.on("close", () => process.exit(0));
