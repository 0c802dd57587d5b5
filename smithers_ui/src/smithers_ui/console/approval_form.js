// The decision form of one pending approval: a note, then approve/deny; select mode picks one
// option, rank mode orders them (move up/down buttons, keyboard friendly).

import { rpc } from "./api.js";
import { h, busy, errorBox, uid } from "./dom.js";

/**
 * @param item a listApprovals row {runId, nodeId, iteration, approvalMode, options, ...}
 * @param ctx {can, identity, onDecided(record), label}
 */
export function approvalForm(item, { can, identity, onDecided }) {
  const mode = item.approvalMode || "gate";
  const options = Array.isArray(item.options) ? item.options : [];
  const what = `${item.nodeId}${item.iteration ? ` #${item.iteration}` : ""}`;
  if (!can.submitApproval) {
    return h("p", { class: "muted" }, "You may not decide approvals (needs the approval:submit scope).");
  }
  const errors = h("div", { class: "errors" });
  const noteId = uid("note");
  const note = h("textarea", { id: noteId, rows: 2, maxlength: 4000, placeholder: "Why (recorded with the decision)" });
  const parts = [];
  let value = () => undefined;

  if (mode === "select") {
    const name = uid("pick");
    const radios = options.map((o, i) => {
      const id = `${name}-${i}`;
      const input = h("input", { type: "radio", name, id, value: o.key });
      return h(
        "div",
        { class: "choice" },
        input,
        h("label", { for: id }, h("strong", {}, o.label || o.key), o.summary ? h("span", { class: "muted" }, ` — ${o.summary}`) : null),
      );
    });
    parts.push(h("fieldset", { class: "choices" }, h("legend", {}, "Choose one option"), radios));
    value = () => {
      const picked = radios.map((r) => r.querySelector("input")).find((i) => i.checked);
      if (!picked) throw new Error("Choose an option before approving.");
      return { selected: picked.value };
    };
  } else if (mode === "rank") {
    const list = h("ol", { class: "ranking", "aria-label": "Ranking, best first" });
    const order = options.map((o) => o.key);
    const byKey = Object.fromEntries(options.map((o) => [o.key, o]));
    const draw = (focusKey, dir) => {
      list.replaceChildren(
        ...order.map((key, i) => {
          const o = byKey[key];
          const label = o.label || key;
          const up = h("button", { type: "button", class: "btn btn-small", "aria-label": `Move ${label} up`, disabled: i === 0 }, "↑");
          const down = h("button", { type: "button", class: "btn btn-small", "aria-label": `Move ${label} down`, disabled: i === order.length - 1 }, "↓");
          up.dataset.key = `${key}:up`;
          down.dataset.key = `${key}:down`;
          up.addEventListener("click", () => swap(i, i - 1, key, "up"));
          down.addEventListener("click", () => swap(i, i + 1, key, "down"));
          return h(
            "li",
            { dataset: { key } },
            h("span", { class: "rank-label" }, h("strong", {}, label), o.summary ? h("span", { class: "muted" }, ` — ${o.summary}`) : null),
            h("span", { class: "rank-moves" }, up, down),
          );
        }),
      );
      if (focusKey) {
        let target = list.querySelector(`[data-key="${CSS.escape(`${focusKey}:${dir}`)}"]`);
        if (target && target.disabled) target = list.querySelector(`[data-key="${CSS.escape(`${focusKey}:${dir === "up" ? "down" : "up"}`)}"]`);
        if (target) target.focus();
      }
    };
    const swap = (i, j, key, dir) => {
      if (j < 0 || j >= order.length) return;
      [order[i], order[j]] = [order[j], order[i]];
      draw(key, dir);
    };
    draw();
    parts.push(h("fieldset", { class: "choices" }, h("legend", {}, "Rank the options (best first)"), list));
    value = () => ({ ranked: [...order] });
  }

  const approveLabel = mode === "select" ? "Approve selection" : mode === "rank" ? "Approve ranking" : "Approve";
  const approve = h("button", { type: "submit", class: "btn btn-primary", "aria-label": `${approveLabel}: ${item.requestTitle || what}` }, approveLabel);
  const deny = h("button", { type: "button", class: "btn btn-danger", "aria-label": `Deny: ${item.requestTitle || what}` }, "Deny");

  const decide = (btn, approved) =>
    busy(btn, async () => {
      errors.replaceChildren();
      const params = { runId: item.runId, nodeId: item.nodeId, iteration: item.iteration || 0, approved };
      const text = note.value.trim();
      if (text) params.note = text;
      try {
        const decision = approved ? value() : undefined;
        if (decision) params.decision = decision;
      } catch (err) {
        errors.replaceChildren(h("div", { class: "alert alert-error", role: "alert" }, err.message));
        return;
      }
      try {
        const result = await rpc("submitApproval", params);
        onDecided({
          item,
          approved: result.approved,
          note: text || null,
          decision: params.decision || null,
          by: identity && identity.userId,
          atMs: Date.now(),
        });
      } catch (err) {
        errors.replaceChildren(errorBox(err, "Decision refused:"));
      }
    });
  deny.addEventListener("click", () => decide(deny, false));
  const form = h(
    "form",
    { class: "decide", "aria-label": `Decide ${item.requestTitle || what}` },
    ...parts,
    h("div", { class: "field" }, h("label", { for: noteId }, "Note (optional)"), note),
    errors,
    h("div", { class: "buttons" }, approve, deny),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    decide(approve, true);
  });
  return form;
}

/** Who may decide, when the approval is restricted. */
export function restrictions(item, identity) {
  const out = [];
  const users = item.allowedUsers || [];
  const scopes = item.allowedScopes || [];
  if (users.length) {
    const me = identity && users.includes(identity.userId);
    out.push(h("span", { class: me ? "muted" : "warn" }, `Only ${users.join(", ")} may decide.`));
  }
  if (scopes.length) out.push(h("span", { class: "muted" }, ` Needs one of: ${scopes.join(", ")}.`));
  return out.length ? h("p", { class: "restrict" }, out) : null;
}
