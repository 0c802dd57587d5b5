// The live event log of one run (WebSocket stream, resumed after drops without gap or
// duplicate: each entry carries its seq in data-seq).

import { h, fmtTime } from "./dom.js";
import { RunEventStream } from "./runstream.js";

const MAX_TEXT = 400;

function clip(text) {
  const s = String(text);
  return s.length > MAX_TEXT ? `${s.slice(0, MAX_TEXT)}…` : s;
}

function who(p) {
  const parts = [];
  if (p.decidedBy) parts.push(`by ${p.decidedBy}`);
  if (p.note) parts.push(`“${p.note}”`);
  return parts.length ? ` ${parts.join(" ")}` : "";
}

/** The entry's title (engine names for decisions) and a one-line summary. */
export function describe(name, p) {
  p = p || {};
  const node = p.nodeId ? `${p.nodeId}${p.iteration ? ` #${p.iteration}` : ""}` : "";
  switch (name) {
    case "approval.decided":
      return [p.approved ? "ApprovalGranted" : "ApprovalDenied", `${node}${who(p)}`];
    case "approval.requested":
      return [name, node];
    case "approval.auto_approved":
      return [name, `${node} (auto-approved)`];
    case "task.output":
      return [name, `${node} [${p.stream || "stdout"}] ${clip(p.output ?? "")}`];
    case "node.failed": {
      const err = p.error || {};
      return [name, `${node} failed: ${err.code ? `${err.code}: ` : ""}${err.message || ""}`];
    }
    case "node.retrying":
      return [name, `${node} retrying (attempt ${p.attempt})`];
    case "run.completed": {
      const err = p.error || null;
      return [name, `${p.status}${err ? ` — ${err.code ? `${err.code}: ` : ""}${err.message || ""}` : ""}`];
    }
    case "run.status_changed":
      return [name, String(p.status || "")];
    case "signal.received":
      return [name, `${p.signalName}${p.correlationId ? ` (${p.correlationId})` : ""}`];
    case "run.time_travel_jumped":
      return [name, `rewound from frame ${p.fromFrameNo} to frame ${p.toFrameNo}${p.caller ? ` by ${p.caller}` : ""}`];
    case "frame.committed":
      return [name, `frame ${p.frameNo}`];
    default:
      if (name.startsWith("node.")) return [name, `${node} → ${p.state || name.slice(5)}`];
      if (name.startsWith("approval.")) return [name, `${node}${who(p)}`];
  }
  const { runId, type, timestampMs, ...rest } = p;
  const text = Object.keys(rest).length ? JSON.stringify(rest) : "";
  return [name, clip(text)];
}

function category(name) {
  if (name.startsWith("approval.")) return "ev-approval";
  if (name === "run.completed") return "ev-end";
  if (name.startsWith("run.")) return "ev-run";
  if (name === "node.failed" || name.endsWith("timeout")) return "ev-fail";
  if (name.startsWith("node.")) return "ev-node";
  if (name.startsWith("task.")) return "ev-task";
  if (name.startsWith("signal.")) return "ev-signal";
  return "ev-other";
}

/**
 * Who decided an approval, and their note: the persisted ApprovalGranted/ApprovalDenied event
 * keeps them (the wire's approval.decided does not), read from the REST facade's history.
 * Stream seq = stored seq + 1.
 */
async function decisionDetails(runId, seq) {
  const url = `/v1/api/runs/${encodeURIComponent(runId)}/events?afterSeq=${seq - 2}&limit=1`;
  try {
    const response = await fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } });
    if (!response.ok) return null;
    const body = await response.json();
    const row = body && body.ok && Array.isArray(body.data) ? body.data[0] : null;
    if (!row || row.seq !== seq - 1) return null;
    const event = JSON.parse(row.payloadJson || "{}");
    return event.decidedBy || event.note ? event : null;
  } catch {
    return null; // the facade is optional: the entry keeps its short form
  }
}

/** The log panel; `onActivity()` runs after new events (to refresh the other panels). */
export function eventLog(runId, { onActivity }) {
  const list = h("ol", { class: "log", "aria-label": "Run events", tabindex: "0" });
  const state = h("span", { class: "stream-state", role: "status" }, "Connecting…");
  const counter = h("span", { class: "muted" });
  const panelId = "log-heading";
  const panel = h(
    "section",
    { class: "panel log-panel", "aria-labelledby": panelId, dataset: { reconnects: "0", lastSeq: "0" } },
    h("div", { class: "panel-head" }, h("h2", { id: panelId }, "Event log"), state, counter),
    list,
  );
  let count = 0;
  const stream = new RunEventStream(runId, {
    onEvent(p) {
      const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
      const inner = p.payload || {};
      const [title, text] = describe(p.event, inner);
      const textEl = h("span", { class: "ev-text" }, text);
      if (p.event === "approval.decided" && !inner.decidedBy) {
        decisionDetails(runId, p.seq).then((stored) => {
          if (stored) textEl.textContent = describe(p.event, { ...inner, ...stored, approved: inner.approved })[1];
        });
      }
      list.append(
        h(
          "li",
          { class: category(p.event), dataset: { seq: String(p.seq), event: p.event } },
          h("span", { class: "seq mono" }, String(p.seq)),
          h("span", { class: "ev-name" }, title),
          textEl,
          inner.timestampMs ? h("time", { class: "muted", datetime: new Date(inner.timestampMs).toISOString() }, fmtTime(inner.timestampMs)) : null,
        ),
      );
      count += 1;
      panel.dataset.lastSeq = String(p.seq);
      counter.textContent = `${count} event${count === 1 ? "" : "s"}`;
      if (nearBottom) list.scrollTop = list.scrollHeight;
      onActivity();
    },
    onGap(p) {
      list.append(
        h(
          "li",
          { class: "ev-gap", dataset: { gapFrom: String(p.fromSeq), gapTo: String(p.toSeq) } },
          h("span", { class: "seq mono" }, "…"),
          h("span", { class: "ev-name" }, "run.gap_resync"),
          h("span", { class: "ev-text" }, `events ${p.fromSeq}–${p.toSeq} no longer exist; the run was reloaded`),
        ),
      );
      panel.dataset.lastSeq = String(p.toSeq);
      onActivity();
    },
    onState(name, info) {
      panel.dataset.stream = name;
      panel.dataset.reconnects = String(info.reconnects);
      state.dataset.state = name;
      if (name === "live") state.textContent = "Live";
      else if (name === "connecting") state.textContent = "Connecting…";
      else if (name === "reconnecting") {
        const wait = info.delay ? ` in ${(info.delay / 1000).toFixed(1)} s` : "";
        state.textContent = `Reconnecting${wait} (attempt ${info.attempt}), resuming after seq ${info.cursor}…`;
      } else if (name === "ended") state.textContent = "Run ended: every event shown";
      else if (name === "error") state.textContent = `Stream refused: ${info.code || ""} ${info.message || ""}`;
    },
  }).start();
  return { element: panel, close: () => stream.close(), reopen: () => stream.reopen() };
}
