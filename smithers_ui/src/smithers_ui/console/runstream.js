// One run's event log over the gateway's WebSocket (docs/streaming.md): connect, then
// streamRunEvents {runId, afterSeq, epoch}. The cursor is the last `payload.seq` shown; on a
// dropped socket, a silent stream, a gap or a run.error the stream reconnects with backoff and
// resumes after the cursor, so the log gets every event exactly once.

const boot = globalThis.__SMITHERS_GATEWAY_UI__ || {};
const SILENCE_MS = 6000; // run.heartbeat arrives every second while a stream is open
const CONNECT_MS = 8000;
const MAX_BACKOFF_MS = 8000;
const END_EVENTS = new Set(["run.completed", "run.continued_as_new"]);

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${boot.wsPath || "/"}`;
}

export class RunEventStream {
  /**
   * @param {string} runId
   * @param {{onEvent: Function, onGap?: Function, onState?: Function, afterSeq?: number}} opts
   *   onEvent(runEventPayload) for each new event, in seq order, exactly once;
   *   onGap(gapResyncPayload) when events are gone for good; onState(state, info).
   */
  constructor(runId, opts) {
    this.runId = runId;
    this.opts = opts;
    this.cursor = opts.afterSeq || 0;
    this.epoch = null;
    this.attempt = 0;
    this.reconnects = 0;
    this.duplicates = 0;
    this.closed = false;
    this.ended = false;
    this.ws = null;
    this.nextId = 0;
    this.pending = {};
    this.watchdog = null;
    this.retryTimer = null;
  }

  start() {
    this.connect();
    return this;
  }

  /** After an ended run executes again (retry, rewind, resume): listen on from the cursor. */
  reopen() {
    if (this.closed || !this.ended) return;
    this.ended = false;
    this.attempt = 0;
    this.connect();
  }

  close() {
    this.closed = true;
    clearTimeout(this.watchdog);
    clearTimeout(this.retryTimer);
    if (this.ws) this.ws.close(1000, "done");
    this.ws = null;
  }

  state(name, info = {}) {
    if (this.opts.onState) {
      this.opts.onState(name, { reconnects: this.reconnects, cursor: this.cursor, ...info });
    }
  }

  connect() {
    if (this.closed || this.ended) return;
    this.state(this.reconnects ? "reconnecting" : "connecting", { attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(socketUrl());
    } catch (err) {
      this.retry(`cannot open a WebSocket: ${err.message}`);
      return;
    }
    this.ws = ws;
    this.pending = {};
    this.kick(CONNECT_MS);
    ws.addEventListener("message", (msg) => {
      if (this.ws !== ws) return;
      let frame;
      try {
        frame = JSON.parse(msg.data);
      } catch {
        return;
      }
      this.handle(ws, frame);
    });
    ws.addEventListener("close", (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearTimeout(this.watchdog);
      if (this.closed || this.ended) return;
      this.retry(`connection closed (${event.code}${event.reason ? ` ${event.reason}` : ""})`);
    });
  }

  /** Drops the current socket (it is not used any more) and reconnects later. */
  drop(ws, why) {
    if (this.ws === ws) this.ws = null;
    clearTimeout(this.watchdog);
    try {
      ws.close(4000, "resync");
    } catch {
      /* already closed */
    }
    this.retry(why);
  }

  retry(why) {
    if (this.closed || this.ended) return;
    clearTimeout(this.retryTimer);
    this.attempt += 1;
    this.reconnects += 1;
    const base = Math.min(MAX_BACKOFF_MS, 250 * 2 ** (this.attempt - 1));
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.state("reconnecting", { attempt: this.attempt, delay, why });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /** Expect a frame within `ms`, else treat the socket as dead. */
  kick(ms = SILENCE_MS) {
    clearTimeout(this.watchdog);
    const ws = this.ws;
    this.watchdog = setTimeout(() => {
      if (ws && this.ws === ws) this.drop(ws, "no heartbeat");
    }, ms);
  }

  request(ws, method, params) {
    this.nextId += 1;
    const id = `${method}-${this.nextId}`;
    this.pending[id] = method;
    ws.send(JSON.stringify({ type: "req", id, method, params }));
    return id;
  }

  handle(ws, frame) {
    if (frame.type === "res") {
      const method = this.pending[frame.id];
      delete this.pending[frame.id];
      if (method === "connect") this.connected(ws, frame);
      else if (method === "streamRunEvents") this.opened(ws, frame);
      return;
    }
    if (frame.type !== "event") return;
    const name = frame.event;
    const p = frame.payload || {};
    if (name === "connect.challenge") {
      this.request(ws, "connect", {
        minProtocol: 1,
        maxProtocol: 1,
        client: { id: "smithers-console", version: "0.1.0", platform: "browser" },
        subscribe: [this.runId],
      });
      return;
    }
    if (!name.startsWith("run.") || p.runId !== this.runId) return;
    this.kick();
    if (name === "run.event") this.event(ws, p);
    else if (name === "run.gap_resync") {
      this.cursor = Math.max(this.cursor, Number(p.toSeq) || 0);
      this.epoch = p.epoch || this.epoch;
      if (this.opts.onGap) this.opts.onGap(p);
    } else if (name === "run.error") {
      const err = p.error || {};
      this.drop(ws, `${err.code || "run.error"}: ${err.message || ""}`);
    }
  }

  connected(ws, frame) {
    if (!frame.ok) {
      const err = frame.error || {};
      this.state("error", { code: err.code, message: err.message });
      this.closed = true;
      ws.close(1000, "auth");
      return;
    }
    const params = { runId: this.runId, afterSeq: this.cursor };
    if (this.epoch) params.epoch = this.epoch;
    this.request(ws, "streamRunEvents", params);
  }

  opened(ws, frame) {
    if (!frame.ok) {
      const err = frame.error || {};
      if (["RunNotFound", "InvalidRunId", "UNAUTHORIZED", "FORBIDDEN"].includes(err.code)) {
        this.closed = true;
        this.state("error", { code: err.code, message: err.message });
        ws.close(1000, "stream refused");
      } else {
        this.drop(ws, `${err.code}: ${err.message}`);
      }
      return;
    }
    this.epoch = frame.payload.epoch || this.epoch;
    this.attempt = 0;
    this.state("live", { currentSeq: frame.payload.currentSeq });
    this.kick();
  }

  event(ws, p) {
    const seq = Number(p.seq);
    if (!Number.isInteger(seq) || seq <= this.cursor) {
      this.duplicates += 1; // already shown: never twice
      return;
    }
    if (seq !== this.cursor + 1) {
      this.drop(ws, `gap: expected seq ${this.cursor + 1}, got ${seq}`);
      return;
    }
    this.cursor = seq;
    if (p.epoch) this.epoch = p.epoch;
    this.opts.onEvent(p);
    if (END_EVENTS.has(p.event)) {
      this.ended = true;
      clearTimeout(this.watchdog);
      this.state("ended");
      ws.close(1000, "run ended");
    }
  }
}
