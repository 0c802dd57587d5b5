// The run page's panels: node timeline (with outputs and Retry), attempts and frames (with
// "Rewind to here").

import { rpc } from "./api.js";
import { h, badge, busy, confirmButton, errorBox, fmtDuration, jsonBlock, parseMaybe, timeEl, uid } from "./dom.js";

const nodeKey = (n) => `${n.nodeId}#${n.iteration || 0}`;

/** Node order: the newest frame's task index (tree order), else by start time. */
function ordered(nodes, frames) {
  const rank = new Map();
  const newest = frames && frames[0];
  const index = newest ? parseMaybe(newest.taskIndexJson) : null;
  if (Array.isArray(index)) {
    index.forEach((t, i) => rank.set(`${t.nodeId}#${t.iteration || 0}`, i));
  }
  return [...nodes].sort((a, b) => {
    const ra = rank.has(nodeKey(a)) ? rank.get(nodeKey(a)) : Infinity;
    const rb = rank.has(nodeKey(b)) ? rank.get(nodeKey(b)) : Infinity;
    if (ra !== rb) return ra - rb;
    const sa = a.startedAtMs ?? Infinity;
    const sb = b.startedAtMs ?? Infinity;
    if (sa !== sb) return sa - sb;
    return nodeKey(a) < nodeKey(b) ? -1 : 1;
  });
}

/**
 * The timeline: one row per node, a bar over the run's time span, its output on demand.
 * With `can.retryTask`, each node of a run that is not executing has a Retry button and a
 * "reset dependents" checkbox (default on): `onRetried(result)` / `onError(err)`.
 */
export function timelinePanel(runId, { can = {}, onRetried = () => {}, onError = () => {} } = {}) {
  const list = h("ol", { class: "timeline", "aria-label": "Nodes" });
  const empty = h("p", { class: "empty", hidden: true }, "No nodes yet.");
  const legend = h("p", { class: "legend muted" }, "Bars show when each node ran within the run.");
  const rows = new Map();

  function outputBox(node) {
    const body = h("div", { class: "output-body" }, h("p", { class: "muted" }, "Loading…"));
    const details = h("details", { class: "node-output" }, h("summary", {}, `Output of ${node.nodeId}`), body);
    details.load = async () => {
      try {
        const out = await rpc("getNodeOutput", { runId, nodeId: node.nodeId, iteration: node.iteration || 0 });
        body.replaceChildren(
          h("p", {}, "Status: ", badge(out.status)),
          out.row !== undefined && out.row !== null ? jsonBlock(out.row) : null,
          out.partial !== undefined && out.partial !== null ? h("div", {}, h("p", { class: "muted" }, "Last heartbeat data:"), jsonBlock(out.partial)) : null,
          out.schema ? h("details", { class: "schema" }, h("summary", {}, "Schema"), jsonBlock(out.schema)) : null,
        );
      } catch (err) {
        body.replaceChildren(err.code === "NodeHasNoOutput" ? h("p", { class: "muted" }, err.message) : errorBox(err));
      }
    };
    details.addEventListener("toggle", () => {
      if (details.open) details.load();
    });
    return details;
  }

  function retryBox(node) {
    const label = `${node.nodeId}${node.iteration ? ` #${node.iteration}` : ""}`;
    const id = uid("reset");
    const reset = h("input", { type: "checkbox", id, checked: true, "aria-label": `Reset dependents of ${label}` });
    const btn = h("button", { type: "button", class: "btn btn-small", "aria-label": `Retry node ${label}` }, "Retry");
    btn.dataset.key = `retry-${runId}-${nodeKey(node)}`;
    btn.addEventListener("click", () =>
      busy(btn, async () => {
        try {
          onRetried(
            await rpc("retryTask", { runId, nodeId: node.nodeId, iteration: node.iteration || 0, resetDependents: reset.checked }),
          );
        } catch (err) {
          onError(err);
        }
      }),
    );
    return h("div", { class: "node-actions", hidden: true }, btn, h("label", { for: id, class: "check" }, reset, " reset dependents"));
  }

  function update(nodes, frames, run) {
    const list2 = ordered(nodes, frames);
    empty.hidden = list2.length > 0;
    const start = run && run.startedAtMs ? run.startedAtMs : Math.min(...list2.map((n) => n.startedAtMs || Infinity));
    const end = run && run.finishedAtMs ? run.finishedAtMs : Date.now();
    const span = Math.max(1, end - start);
    const seen = new Set();
    for (const node of list2) {
      const key = nodeKey(node);
      seen.add(key);
      let row = rows.get(key);
      if (!row) {
        const main = h("div", { class: "node-main" });
        const output = outputBox(node);
        const retry = can.retryTask ? retryBox(node) : null;
        row = { li: h("li", { class: "node", dataset: { node: node.nodeId } }, main, retry, output), main, output, retry, state: null };
        rows.set(key, row);
      }
      const took = node.startedAtMs ? (node.finishedAtMs || Date.now()) - node.startedAtMs : null;
      const bar = h("span", { class: ["bar", `st-${node.state}`] });
      if (node.startedAtMs && Number.isFinite(start)) {
        const left = Math.max(0, Math.min(100, ((node.startedAtMs - start) / span) * 100));
        const width = Math.max(0.8, Math.min(100 - left, (((node.finishedAtMs || end) - node.startedAtMs) / span) * 100));
        bar.style.left = `${left}%`;
        bar.style.width = `${width}%`;
      } else {
        bar.classList.add("bar-none");
      }
      row.main.replaceChildren(
        h("span", { class: ["dot", `st-${node.state}`], "aria-hidden": "true" }),
        h("span", { class: "node-name" }, h("strong", { class: "mono" }, node.nodeId), node.iteration ? h("span", { class: "muted" }, ` #${node.iteration}`) : null, node.label ? h("span", { class: "muted" }, ` ${node.label}`) : null),
        badge(node.state),
        h("span", { class: "node-time muted" }, node.lastAttempt ? `attempt ${node.lastAttempt} · ` : "", fmtDuration(took)),
        h("span", { class: "track", "aria-hidden": "true" }, bar),
      );
      row.li.dataset.state = node.state;
      if (row.retry) row.retry.hidden = !run || run.status === "running";
      if (row.state !== node.state && row.output.open) row.output.load();
      row.state = node.state;
      list.append(row.li);
    }
    for (const [key, row] of rows) {
      if (!seen.has(key)) {
        row.li.remove();
        rows.delete(key);
      }
    }
  }
  return { element: h("div", {}, legend, list, empty), update };
}

/** Attempts with their errors. */
export function attemptsPanel() {
  const tbody = h("tbody");
  const table = h(
    "table",
    { class: "table attempts", "aria-label": "Attempts" },
    h("thead", {}, h("tr", {}, ["Node", "Attempt", "State", "Started", "Duration", "Error"].map((c) => h("th", { scope: "col" }, c)))),
    tbody,
  );
  const empty = h("p", { class: "empty" }, "No attempts yet.");
  function update(attempts) {
    tbody.replaceChildren(
      ...attempts.map((a) => {
        const err = a.errorJson ? parseMaybe(a.errorJson) : null;
        const took = a.startedAtMs ? (a.finishedAtMs || Date.now()) - a.startedAtMs : null;
        return h(
          "tr",
          { dataset: { node: a.nodeId, attempt: String(a.attempt) } },
          h("td", { "data-label": "Node", class: "mono" }, a.nodeId, a.iteration ? ` #${a.iteration}` : ""),
          h("td", { "data-label": "Attempt" }, String(a.attempt), a.cached ? h("span", { class: "muted" }, " (cached)") : null),
          h("td", { "data-label": "State" }, badge(a.state)),
          h("td", { "data-label": "Started" }, timeEl(a.startedAtMs)),
          h("td", { "data-label": "Duration" }, fmtDuration(took)),
          h("td", { "data-label": "Error", class: "attempt-error" }, err ? errorText(err) : h("span", { class: "muted" }, "—")),
        );
      }),
    );
    table.hidden = attempts.length === 0;
    empty.hidden = attempts.length > 0;
  }
  return { element: h("div", { class: "table-wrap" }, table, empty), update };
}

function errorText(err) {
  if (typeof err !== "object" || err === null) return h("span", { class: "err" }, String(err));
  return h(
    "span",
    { class: "err" },
    err.code ? h("strong", {}, `${err.code}: `) : err.name ? h("strong", {}, `${err.name}: `) : null,
    err.message || JSON.stringify(err),
  );
}

/**
 * Frames (newest first): each one's tree on demand. With `can.rewindRun`, each has a
 * "Rewind to here" button (asks once more): `onRewound(result, frameNo)` / `onError(err)`.
 */
export function framesPanel(runId, { can = {}, onRewound = () => {}, onError = () => {} } = {}) {
  const list = h("ol", { class: "frames", "aria-label": "Frames" });
  const empty = h("p", { class: "empty" }, "No frames yet.");
  const rows = new Map(); // a rewind deletes frames and writes new ones under the same numbers
  const keyOf = (f) => `${f.frameNo}:${f.createdAtMs}:${f.xmlHash}`;
  function rewindButton(frameNo) {
    const btn = confirmButton(
      "Rewind to here",
      `Confirm rewind to frame ${frameNo}`,
      (b) =>
        busy(b, async () => {
          try {
            onRewound(await rpc("rewindRun", { runId, frameNo, confirm: true }), frameNo);
          } catch (err) {
            onError(err);
          }
        }),
      "btn btn-small btn-danger",
      `rewind-${runId}-${frameNo}`,
    );
    btn.setAttribute("aria-label", `Rewind to frame ${frameNo}`);
    return btn;
  }
  function update(frames) {
    const wanted = new Set(frames.map(keyOf));
    for (const key of [...rows.keys()]) if (!wanted.has(key)) rows.delete(key);
    for (const f of frames) {
      if (rows.has(keyOf(f))) continue;
      const body = h("div", { class: "frame-tree" });
      const details = h(
        "details",
        { class: "frame", dataset: { frame: String(f.frameNo) } },
        h("summary", {}, h("strong", {}, `Frame ${f.frameNo}`), " ", timeEl(f.createdAtMs), h("span", { class: "muted" }, ` · ${f.encoding} · ${String(f.xmlHash || "").slice(0, 10)}`)),
        body,
      );
      details.addEventListener("toggle", () => {
        if (!details.open || body.childElementCount) return;
        const tree = parseMaybe(f.xmlJson);
        body.append(tree && typeof tree === "object" ? treeView(tree) : jsonBlock(tree));
        const tasks = parseMaybe(f.mountedTaskIdsJson);
        if (Array.isArray(tasks)) body.append(h("p", { class: "muted" }, `Mounted tasks: ${tasks.join(", ") || "none"}`));
      });
      const li = h("li", { dataset: { frameNo: String(f.frameNo) } }, details, can.rewindRun ? rewindButton(f.frameNo) : null);
      rows.set(keyOf(f), { li, frameNo: f.frameNo });
    }
    const order = [...rows.values()].sort((a, b) => b.frameNo - a.frameNo);
    const same = order.length === list.children.length && order.every((r, i) => list.children[i] === r.li);
    if (!same) list.replaceChildren(...order.map((r) => r.li)); // moving a button drops its focus
    empty.hidden = rows.size > 0;
  }
  return { element: h("div", {}, list, empty), update };
}

function treeView(node, depth = 0) {
  if (!node || typeof node !== "object" || depth > 40) return h("span", {}, String(node));
  if (node.kind === "text") return h("li", { class: "muted" }, String(node.text || ""));
  const props = node.props || {};
  const label = [node.tag || node.kind || "node"];
  if (props.id) label.push(`#${props.id}`);
  const extra = Object.entries(props)
    .filter(([k]) => k !== "id")
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(" ");
  const children = Array.isArray(node.children) ? node.children : [];
  const item = h("li", {}, h("span", { class: "mono" }, label.join(" ")), extra ? h("span", { class: "muted" }, ` ${extra}`) : null, children.length ? h("ul", {}, children.map((c) => treeView(c, depth + 1))) : null);
  return depth === 0 ? h("ul", { class: "tree" }, item) : item;
}
