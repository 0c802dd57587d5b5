// Pause, cancel, resume and rerun buttons for one run; each only when `can` allows it.

import { rpc } from "./api.js";
import { h, busy, confirmButton, TERMINAL, shortId } from "./dom.js";

/**
 * @param run a run row
 * @param can the caller's permissions (props.can)
 * @param opts {onDone(kind, result), onError(err), compact}
 *   compact (lists): Cancel for an active run, Rerun for a finished one; else all that apply
 *   (Pause only for a `running` run).
 */
export function runActions(run, can, { onDone, onError, compact = false }) {
  const active = !TERMINAL.has(run.status);
  const name = shortId(run.runId);
  const out = [];
  const call = (btn, kind, method) =>
    busy(btn, async () => {
      try {
        onDone(kind, await rpc(method, { runId: run.runId }));
      } catch (err) {
        onError(err, kind);
      }
    });
  if (run.status === "running" && can.pauseRun && !compact) {
    const btn = h("button", { type: "button", class: "btn", "aria-label": `Pause run ${name}` }, "Pause");
    btn.dataset.key = `pause-${run.runId}`;
    btn.addEventListener("click", () => call(btn, "pause", "pauseRun"));
    out.push(btn);
  }
  if (active && can.cancelRun) {
    const btn = confirmButton("Cancel", "Confirm cancel", (b) => call(b, "cancel", "cancelRun"), "btn btn-danger", `cancel-${run.runId}`);
    btn.setAttribute("aria-label", `Cancel run ${name}`);
    out.push(btn);
  }
  if (active && can.resumeRun && !compact) {
    const btn = h("button", { type: "button", class: "btn", "aria-label": `Resume run ${name}` }, "Resume");
    btn.dataset.key = `resume-${run.runId}`;
    btn.addEventListener("click", () => call(btn, "resume", "resumeRun"));
    out.push(btn);
  }
  if (can["runs.rerun"] && (!compact || !active)) {
    const btn = h("button", { type: "button", class: "btn", "aria-label": `Rerun run ${name}` }, "Rerun");
    btn.dataset.key = `rerun-${run.runId}`;
    btn.addEventListener("click", () => call(btn, "rerun", "runs.rerun"));
    out.push(btn);
  }
  return out;
}

/** Focus survives a re-render: the focused element's data-key is looked up again. */
export function keepFocus(container, render) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.key : null;
  render();
  if (key) {
    const again = container.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again) again.focus({ preventScroll: true });
  }
}

/** Who started a run (the gateway records it in the run's config). */
export function startedBy(run) {
  try {
    const config = JSON.parse(run.configJson || "{}");
    return config.gatewayTriggeredBy || (config.auth && config.auth.triggeredBy) || null;
  } catch {
    return null;
  }
}
