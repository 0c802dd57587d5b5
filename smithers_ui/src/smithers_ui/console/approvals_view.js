// The approvals inbox: every pending approval (oldest first), decided in place; live.

import { rpc } from "./api.js";
import { h, badge, errorBox, section, shortId, timeEl } from "./dom.js";
import { changes } from "./live.js";
import { approvalForm, restrictions } from "./approval_form.js";

/** Decisions taken from this browser (the API lists pending approvals only). */
export const decidedHere = [];

export function keyOf(item) {
  return `${item.runId}:${item.nodeId}:${item.iteration || 0}`;
}

/** One approval as a card with its decision form. */
export function approvalCard(item, app, onDecided, level = "h2") {
  const title = item.requestTitle || item.nodeId;
  const headingId = `appr-${keyOf(item).replace(/[^A-Za-z0-9_-]/g, "_")}`;
  return h(
    "article",
    { class: "card approval", "aria-labelledby": headingId, dataset: { key: keyOf(item), mode: item.approvalMode || "gate" } },
    h("header", { class: "card-head" }, h(level, { id: headingId }, title), badge(item.approvalMode || "gate")),
    item.requestSummary ? h("p", { class: "summary" }, item.requestSummary) : null,
    h(
      "dl",
      { class: "meta" },
      h("dt", {}, "Workflow"), h("dd", {}, item.workflowKey || "—"),
      h("dt", {}, "Run"), h("dd", {}, h("a", { href: app.runHref(item.runId), "data-route": "", class: "mono", title: item.runId }, shortId(item.runId))),
      h("dt", {}, "Node"), h("dd", { class: "mono" }, `${item.nodeId}${item.iteration ? ` #${item.iteration}` : ""}`),
      h("dt", {}, "Requested"), h("dd", {}, timeEl(item.requestedAtMs)),
    ),
    restrictions(item, app.identity),
    approvalForm(item, { can: app.can, identity: app.identity, onDecided }),
  );
}

/** A decision taken here, in words. */
export function decisionLine(record, app) {
  const { item } = record;
  const verdict = record.approved ? "approved" : "denied";
  const choice = record.decision && record.decision.selected
    ? ` — selected ${record.decision.selected}`
    : record.decision && record.decision.ranked
      ? ` — ranked ${record.decision.ranked.join(" > ")}`
      : "";
  return h(
    "li",
    { dataset: { key: keyOf(item), verdict } },
    badge(record.approved ? "approved" : "denied"),
    " ",
    h("strong", {}, item.requestTitle || item.nodeId),
    ` on run `,
    h("a", { href: app.runHref(item.runId), "data-route": "", class: "mono" }, shortId(item.runId)),
    ` ${verdict} by ${record.by || "you"}${choice}`,
    record.note ? h("span", { class: "muted" }, ` — “${record.note}”`) : null,
    " ",
    timeEl(record.atMs),
  );
}

export function approvalsView({ outlet }, app) {
  const errors = h("div", { class: "errors" });
  const status = h("div", { class: "messages", role: "status" });
  const list = h("div", { class: "cards" });
  const empty = h("p", { class: "empty", hidden: true }, "Nothing waits for a decision.");
  const count = h("span", { class: "count-big" });
  const history = h("ul", { class: "decided" });
  const historyPanel = section("Decided from this browser", history);
  const cards = new Map();

  const onDecided = (record) => {
    decidedHere.unshift(record);
    status.replaceChildren(decisionLine(record, app).cloneNode(true));
    drawHistory();
    load();
  };
  const drawHistory = () => {
    history.replaceChildren(...decidedHere.map((r) => decisionLine(r, app)));
    historyPanel.hidden = decidedHere.length === 0;
  };

  outlet.append(
    h("div", { class: "view-head" }, h("h1", {}, "Approvals ", count)),
    h("p", { class: "muted" }, "Pending decisions, oldest first. Each run's event log shows who decided what, with their note."),
    errors,
    status,
    list,
    empty,
    historyPanel,
  );
  drawHistory();

  let seq = 0;
  async function load() {
    const mine = ++seq;
    let items;
    try {
      items = await rpc("listApprovals", {});
    } catch (err) {
      if (mine === seq) errors.replaceChildren(errorBox(err, "Could not list approvals:"));
      return;
    }
    if (mine !== seq) return;
    errors.replaceChildren();
    // keyed: a card being filled in keeps its note and choice across live refreshes
    const wanted = new Set(items.map(keyOf));
    for (const [key, el] of cards) {
      if (!wanted.has(key)) {
        el.remove();
        cards.delete(key);
      }
    }
    for (const item of items) {
      const key = keyOf(item);
      let el = cards.get(key);
      if (!el) {
        el = approvalCard(item, app, onDecided);
        cards.set(key, el);
      }
      list.append(el);
    }
    empty.hidden = items.length > 0;
    count.textContent = items.length ? `(${items.length})` : "";
    app.setCount("approvals", items.length);
  }

  load();
  const unsubscribe = changes.subscribe(["approvals"], load);
  return () => unsubscribe();
}
