// The runs list: live (change stream), filtered by status and workflow, paged (limit/offset).

import { rpc } from "./api.js";
import {
  h, badge, errorBox, fmtDuration, notice, RUN_STATUSES, shortId, timeEl, uid,
} from "./dom.js";
import { changes } from "./live.js";
import { keepFocus, runActions, startedBy } from "./actions.js";

const SIZES = [10, 20, 50, 100];

/**
 * Renders the list into `outlet`. `app` = {can, workflows: Promise<list>, runHref(id)};
 * `fixedWorkflow` shows one workflow's runs (no workflow filter). Returns the disposer.
 */
export function runsView({ query, router, outlet }, app, { fixedWorkflow = null, heading = "Runs" } = {}) {
  const state = {
    status: query.get("status") || "",
    workflow: fixedWorkflow || query.get("workflow") || "",
    limit: SIZES.includes(Number(query.get("limit"))) ? Number(query.get("limit")) : 20,
    offset: Math.max(0, Number.parseInt(query.get("offset") || "0", 10) || 0),
  };
  const messages = h("div", { class: "messages" });
  const errors = h("div", { class: "errors" });
  const tbody = h("tbody");
  const table = h(
    "table",
    { class: "table runs", "aria-label": heading },
    h("thead", {}, h("tr", {}, ["Run", "Workflow", "Status", "Created", "Duration", "Started by", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
    tbody,
  );
  const empty = h("p", { class: "empty", hidden: true }, "No runs match.");
  const range = h("span", { class: "range", "aria-live": "polite" });
  const prev = h("button", { type: "button", class: "btn", disabled: true }, "← Previous");
  const next = h("button", { type: "button", class: "btn", disabled: true }, "Next →");
  prev.addEventListener("click", () => move(-1));
  next.addEventListener("click", () => move(1));

  const statusSel = select("Status", [["", "Any status"], ...RUN_STATUSES.map((s) => [s, s])], state.status);
  const sizeSel = select("Per page", SIZES.map((n) => [String(n), String(n)]), String(state.limit));
  const wfSel = fixedWorkflow ? null : select("Workflow", [["", "Any workflow"]], state.workflow);
  if (wfSel) {
    app.workflows.then((list) => {
      for (const wf of list) wfSel.select.append(h("option", { value: wf.key }, wf.key));
      wfSel.select.value = state.workflow;
    }, () => {});
  }
  const onFilter = () => {
    state.status = statusSel.select.value;
    if (wfSel) state.workflow = wfSel.select.value;
    state.limit = Number(sizeSel.select.value);
    state.offset = 0;
    load();
  };
  for (const f of [statusSel, wfSel, sizeSel]) if (f) f.select.addEventListener("change", onFilter);

  outlet.append(
    h(
      "div",
      { class: "view-head" },
      h("h1", {}, heading),
      app.can.launchRun && !fixedWorkflow
        ? h("a", { class: "btn btn-primary", href: router.href("/launch"), "data-route": "" }, "Launch a run")
        : null,
    ),
    h("form", { class: "filters", role: "search", "aria-label": "Filter runs", on: { submit: (e) => e.preventDefault() } }, statusSel.field, wfSel && wfSel.field, sizeSel.field),
    messages,
    errors,
    h("div", { class: "table-wrap" }, table),
    empty,
    h("nav", { class: "pager", "aria-label": "Pages" }, prev, range, next),
  );

  function move(dir) {
    state.offset = Math.max(0, state.offset + dir * state.limit);
    load();
  }

  let seq = 0;
  async function load() {
    const mine = ++seq;
    if (!fixedWorkflow) {
      router.setQuery({
        status: state.status,
        workflow: state.workflow,
        limit: state.limit === 20 ? "" : state.limit,
        offset: state.offset || "",
      });
    }
    const filter = { limit: state.limit + 1, offset: state.offset };
    if (state.status) filter.status = state.status;
    if (state.workflow) filter.workflow = state.workflow;
    let rows;
    try {
      rows = await rpc("listRuns", { filter });
    } catch (err) {
      if (mine === seq) errors.replaceChildren(errorBox(err, "Could not list runs:"));
      return;
    }
    if (mine !== seq) return;
    errors.replaceChildren();
    const more = rows.length > state.limit;
    const page = rows.slice(0, state.limit);
    keepFocus(table, () => tbody.replaceChildren(...page.map(row)));
    empty.hidden = page.length > 0;
    table.hidden = page.length === 0;
    prev.disabled = state.offset === 0;
    next.disabled = !more;
    range.textContent = page.length
      ? `Runs ${state.offset + 1}–${state.offset + page.length}`
      : state.offset ? "No more runs" : "";
  }

  function row(run) {
    const took = run.startedAtMs ? (run.finishedAtMs || Date.now()) - run.startedAtMs : null;
    const actions = runActions(run, app.can, {
      compact: true,
      onDone: (kind, result) => {
        messages.replaceChildren(doneNotice(kind, run, result, router, app));
        load();
      },
      onError: (err) => errors.replaceChildren(errorBox(err)),
    });
    return h(
      "tr",
      { dataset: { runId: run.runId, status: run.status } },
      h("td", { "data-label": "Run" }, h("a", { href: app.runHref(run.runId), "data-route": "", title: run.runId, class: "mono", dataset: { key: `open-${run.runId}` } }, shortId(run.runId))),
      h("td", { "data-label": "Workflow" }, run.workflowKey || run.workflowName),
      h("td", { "data-label": "Status" }, badge(run.status)),
      h("td", { "data-label": "Created" }, timeEl(run.createdAtMs)),
      h("td", { "data-label": "Duration" }, fmtDuration(took)),
      h("td", { "data-label": "Started by" }, startedBy(run) || "—"),
      h("td", { "data-label": "Actions", class: "actions" }, actions.length ? actions : h("span", { class: "muted" }, "—")),
    );
  }

  load();
  const unsubscribe = changes.subscribe(["runs"], load);
  return () => unsubscribe();
}

function select(label, options, value) {
  const id = uid("sel");
  const sel = h("select", { id }, options.map(([v, text]) => h("option", { value: v }, text)));
  sel.value = value;
  return { select: sel, field: h("div", { class: "field" }, h("label", { for: id }, label), sel) };
}

/** What a run action did, with a link to the new run of a rerun. */
export function doneNotice(kind, run, result, router, app) {
  if (kind === "rerun" && result && result.runId) {
    return h(
      "div",
      { class: "alert alert-ok", role: "status" },
      `Rerun of ${shortId(run.runId)} started: `,
      h("a", { href: app.runHref(result.runId), "data-route": "", class: "mono" }, shortId(result.runId)),
    );
  }
  if (kind === "cancel") return notice(`Run ${shortId(run.runId)}: ${(result && result.status) || "cancel requested"}`);
  if (kind === "pause") return notice(`Run ${shortId(run.runId)}: ${(result && result.status) || "pause requested"}; it pauses once its running tasks finish`);
  return notice(`Run ${shortId(run.runId)}: ${(result && result.status) || "resume requested"}`);
}
