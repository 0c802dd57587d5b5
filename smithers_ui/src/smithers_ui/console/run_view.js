// One run: header and actions (pause, cancel, resume, rerun), pending approvals, signal form,
// node timeline (retry), live event log, attempts, frames (rewind).

import { rpc } from "./api.js";
import {
  h, badge, busy, errorBox, fmtDuration, notice, parseMaybe, section, shortId, TERMINAL, timeEl, uid,
} from "./dom.js";
import { changes } from "./live.js";
import { runActions, startedBy } from "./actions.js";
import { approvalCard, keyOf } from "./approvals_view.js";
import { eventLog } from "./eventlog.js";
import { attemptsPanel, framesPanel, timelinePanel } from "./run_panels.js";
import { doneNotice } from "./runs_view.js";

/** At most one call per `ms`, the last one always made. */
function throttle(fn, ms) {
  let timer = null;
  let last = 0;
  const run = () => {
    const wait = last + ms - Date.now();
    if (wait <= 0) {
      last = Date.now();
      timer = null;
      fn();
    } else if (!timer) {
      timer = setTimeout(() => {
        timer = null;
        run();
      }, wait);
    }
  };
  run.cancel = () => clearTimeout(timer);
  return run;
}

export function runView({ params, router, outlet }, app) {
  const runId = params[0];
  const can = app.can;
  const title = h("h1", {}, "Run ", h("span", { class: "mono", title: runId }, shortId(runId)), " ");
  const status = h("span", { class: "run-status" });
  title.append(status);
  const head = h("dl", { class: "meta run-meta" });
  const actions = h("div", { class: "buttons run-actions" });
  const messages = h("div", { class: "messages" });
  const errors = h("div", { class: "errors" });
  const runError = h("div", {});
  const approvalsBox = h("div", { class: "cards" });
  const approvalsPanel = section("Waiting for a decision", approvalsBox);
  approvalsPanel.hidden = true;
  // a retry or a rewind runs the run again: its log listens on (it had ended with the run)
  const again = (text) => {
    messages.replaceChildren(notice(text));
    log.reopen();
    load();
  };
  const timeline = timelinePanel(runId, {
    can,
    onRetried: (r) => again(`Retry of ${r.nodeId}${r.iteration ? ` #${r.iteration}` : ""} requested; reset: ${(r.resetNodes || []).map((n) => n.nodeId).join(", ") || "none"}.`),
    onError: (e) => messages.replaceChildren(errorBox(e, "Retry refused:")),
  });
  const attempts = attemptsPanel();
  const frames = framesPanel(runId, {
    can,
    onRewound: (r, frameNo) => again(`Rewound to frame ${frameNo}: ${r.deletedFrames} frame(s) and ${r.deletedAttempts} attempt(s) deleted; the run executes again from there.`),
    onError: (e) => messages.replaceChildren(errorBox(e, "Rewind refused:")),
  });
  const signal = can.submitSignal ? signalForm(runId) : null;
  const refresh = throttle(() => load(), 400);
  const log = eventLog(runId, { onActivity: refresh });
  const cards = new Map();
  let current = null;

  outlet.append(
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: router.href("/"), "data-route": "" }, "Runs"), " / ", h("span", { class: "mono", "aria-current": "page" }, runId)),
    h("div", { class: "view-head" }, title, actions),
    errors,
    messages,
    runError,
    head,
    h(
      "div",
      { class: "run-grid" },
      h("div", { class: "run-col" }, approvalsPanel, signal ? signal.element : null, section("Nodes", timeline.element), section("Attempts", attempts.element)),
      h("div", { class: "run-col" }, log.element, section("Frames", frames.element)),
    ),
  );

  function drawHead(run) {
    status.replaceChildren(badge(run.status));
    const took = run.startedAtMs ? (run.finishedAtMs || Date.now()) - run.startedAtMs : null;
    const rows = [
      ["Run id", h("span", { class: "mono" }, run.runId)],
      ["Workflow", h("a", { href: router.href("/", { workflow: run.workflowKey || run.workflowName }), "data-route": "" }, run.workflowKey || run.workflowName)],
      ["Status", run.runState && run.runState.state && run.runState.state !== run.status ? `${run.status} (${run.runState.state})` : run.status],
      ["Created", timeEl(run.createdAtMs)],
      ["Started", timeEl(run.startedAtMs)],
      ["Finished", timeEl(run.finishedAtMs)],
      ["Duration", fmtDuration(took)],
      ["Started by", startedBy(run) || "—"],
    ];
    if (run.parentRunId) rows.push(["Parent run", h("a", { href: app.runHref(run.parentRunId), "data-route": "", class: "mono" }, shortId(run.parentRunId))]);
    if (run.cancelRequestedAtMs) rows.push(["Cancel requested", h("span", {}, timeEl(run.cancelRequestedAtMs), run.cancelRequestClientIdentity ? ` by ${run.cancelRequestClientIdentity}` : "")]);
    if (run.summary && typeof run.summary === "object") {
      rows.push(["Nodes", Object.entries(run.summary).map(([k, v]) => `${v} ${k}`).join(", ") || "—"]);
    }
    head.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    const err = run.errorJson ? parseMaybe(run.errorJson) : null;
    runError.replaceChildren(
      err ? errorBox({ code: (err && err.code) || "RUN_FAILED", message: (err && err.message) || String(run.errorJson) }, "Run error:") : "",
    );
    actions.replaceChildren(
      ...runActions(run, can, {
        onDone: (kind, result) => {
          messages.replaceChildren(doneNotice(kind, run, result, router, app));
          if (kind === "rerun" && result && result.runId) return;
          if (kind === "resume") log.reopen();
          load();
        },
        onError: (e) => messages.replaceChildren(errorBox(e)),
      }),
    );
    if (signal) signal.update(run);
  }

  function drawApprovals(items) {
    const wanted = new Set(items.map(keyOf));
    for (const [key, el] of cards) {
      if (!wanted.has(key)) {
        el.remove();
        cards.delete(key);
      }
    }
    for (const item of items) {
      if (!cards.has(keyOf(item))) {
        cards.set(keyOf(item), approvalCard(item, app, (record) => {
          messages.replaceChildren(notice(`${record.item.requestTitle || record.item.nodeId}: ${record.approved ? "approved" : "denied"} by ${record.by || "you"}`));
          load();
        }, "h3"));
      }
      approvalsBox.append(cards.get(keyOf(item)));
    }
    approvalsPanel.hidden = items.length === 0;
  }

  let seq = 0;
  async function load() {
    const mine = ++seq;
    const [run, nodes, atts, approvals, frameRows] = await Promise.allSettled([
      rpc("getRun", { runId }),
      rpc("listNodeStates", { runId }),
      rpc("attempts.list", { runId }),
      rpc("listApprovals", { runId }),
      rpc("frames.list", { runId, limit: 20 }),
    ]);
    if (mine !== seq) return;
    const failures = [run, nodes, atts, approvals, frameRows].filter((r) => r.status === "rejected");
    errors.replaceChildren(...dedupe(failures.map((f) => f.reason)).map((e) => errorBox(e)));
    if (run.status === "fulfilled") {
      current = run.value;
      drawHead(current);
    }
    const frameList = frameRows.status === "fulfilled" ? frameRows.value : [];
    if (nodes.status === "fulfilled") timeline.update(nodes.value, frameList, current);
    if (atts.status === "fulfilled") attempts.update(atts.value);
    if (approvals.status === "fulfilled") drawApprovals(approvals.value);
    if (frameRows.status === "fulfilled") frames.update(frameList);
    if (signal && nodes.status === "fulfilled") signal.suggest(nodes.value);
  }

  load();
  const unsubscribe = changes.subscribe(["approvals"], refresh);
  return () => {
    unsubscribe();
    refresh.cancel();
    log.close();
  };
}

function dedupe(errors) {
  const seen = new Set();
  return errors.filter((e) => {
    const key = `${e.code}:${e.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** Send a signal with a JSON payload (validated here before the server sees it). */
function signalForm(runId) {
  const ids = { name: uid("sig"), payload: uid("pay"), corr: uid("corr") };
  const name = h("input", { id: ids.name, name: "signalName", required: true, autocomplete: "off" });
  const corr = h("input", { id: ids.corr, name: "correlationId", autocomplete: "off", placeholder: "(none)" });
  const payload = h("textarea", { id: ids.payload, name: "payload", rows: 4, class: "mono", spellcheck: "false" });
  payload.value = "{}";
  const payloadError = h("div", { class: "field-error", id: uid("perr"), hidden: true });
  payload.setAttribute("aria-describedby", payloadError.id);
  const result = h("div", { class: "messages" });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Send signal");
  let edited = false;
  let sent = false;
  name.addEventListener("input", () => {
    edited = true;
  });
  const form = h(
    "form",
    { class: "signal-form", "aria-label": "Send a signal" },
    h(
      "div",
      { class: "row" },
      h("div", { class: "field" }, h("label", { for: ids.name }, "Signal name"), name),
      h("div", { class: "field" }, h("label", { for: ids.corr }, "Correlation id (optional)"), corr),
    ),
    h("div", { class: "field" }, h("label", { for: ids.payload }, "Payload (JSON)"), payload, payloadError),
    result,
    h("div", { class: "buttons" }, submit),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    result.replaceChildren();
    let value;
    try {
      value = JSON.parse(payload.value.trim() || "null");
      payloadError.hidden = true;
      payload.removeAttribute("aria-invalid");
    } catch (err) {
      payloadError.hidden = false;
      payloadError.textContent = `Payload is not valid JSON: ${err.message}`;
      payload.setAttribute("aria-invalid", "true");
      payload.focus();
      return;
    }
    if (!name.value.trim()) {
      result.replaceChildren(h("div", { class: "alert alert-error", role: "alert" }, "A signal name is required."));
      name.focus();
      return;
    }
    busy(submit, async () => {
      const params = { runId, signalName: name.value.trim(), payload: value };
      if (corr.value.trim()) params.correlationId = corr.value.trim();
      try {
        const rec = await rpc("submitSignal", params);
        sent = true;
        result.replaceChildren(notice(`Signal ${rec.signalName} delivered (seq ${rec.seq}).`));
      } catch (err) {
        result.replaceChildren(errorBox(err, "Signal refused:"));
      }
    });
  });
  const element = section("Send a signal", form);
  return {
    element,
    update(run) {
      const over = TERMINAL.has(run.status);
      element.hidden = over && !sent;
      submit.disabled = over;
    },
    /** Prefills the name of the node waiting for an event (a WaitSignal's id). */
    suggest(nodes) {
      if (edited) return;
      const waiting = nodes.find((n) => n.state === "waiting-event");
      if (waiting && !name.value) name.value = waiting.nodeId;
    },
  };
}
