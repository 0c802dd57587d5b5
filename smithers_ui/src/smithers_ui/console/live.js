// Live list updates: the REST plugin's change stream (GET /v1/api/stream, Server-Sent Events).
// `change` names the collections that changed, `reset` means "refetch everything". Without
// the stream (plugin disabled, or refused) the lists are polled instead.

const STREAM = "/v1/api/stream";
const DEBOUNCE_MS = 150; // changes within this window cause one refetch
const POLL_MS = 4000;

class ChangeStream {
  constructor() {
    this.subs = new Set();
    this.stateFns = new Set();
    this.state = "off";
    this.source = null;
    this.pollTimer = null;
  }

  /** `fn()` runs (at most once per short window) after any of `collections` changed; returns the unsubscriber. */
  subscribe(collections, fn) {
    const sub = { collections: new Set(collections), fn, timer: null };
    this.subs.add(sub);
    this.start();
    return () => {
      clearTimeout(sub.timer);
      this.subs.delete(sub);
    };
  }

  onState(fn) {
    this.stateFns.add(fn);
    fn(this.state);
    return () => this.stateFns.delete(fn);
  }

  setState(state) {
    this.state = state;
    document.documentElement.dataset.live = state;
    this.stateFns.forEach((fn) => fn(state));
  }

  start() {
    if (this.source || this.pollTimer) return;
    if (typeof EventSource === "undefined") {
      this.poll();
      return;
    }
    this.setState("connecting");
    const source = new EventSource(STREAM);
    this.source = source;
    source.addEventListener("open", () => {
      this.setState("live");
    });
    source.addEventListener("change", (event) => {
      let names = [];
      try {
        names = JSON.parse(event.data).collections || [];
      } catch {
        names = [];
      }
      this.dispatch(new Set(names));
    });
    source.addEventListener("reset", () => this.dispatch(null));
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        // refused (404 without the plugin, 401/403, 429): fall back to polling
        source.close();
        this.source = null;
        this.poll();
      } else {
        this.setState("connecting"); // the browser retries with Last-Event-ID
      }
    });
  }

  poll() {
    if (this.pollTimer) return;
    this.setState("polling");
    this.pollTimer = setInterval(() => this.dispatch(null), POLL_MS);
  }

  /** Notifies the subscribers of `names` (all of them for null). */
  dispatch(names) {
    for (const sub of this.subs) {
      const hit = names === null || [...sub.collections].some((c) => names.has(c));
      if (!hit || sub.timer) continue; // one refetch per window, even under a steady stream
      sub.timer = setTimeout(() => {
        sub.timer = null;
        if (this.subs.has(sub)) sub.fn();
      }, DEBOUNCE_MS);
    }
  }
}

export const changes = new ChangeStream();
