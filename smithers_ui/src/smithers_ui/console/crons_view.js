// Cron schedules: list, add, remove and trigger (cron:read / cron:write).

import { rpc } from "./api.js";
import { h, busy, confirmButton, errorBox, notice, parseMaybe, shortId, timeEl, uid } from "./dom.js";
import { changes } from "./live.js";
import { keepFocus } from "./actions.js";

export function cronsView({ outlet }, app) {
  const can = app.can;
  const errors = h("div", { class: "errors" });
  const messages = h("div", { class: "messages" });
  const tbody = h("tbody");
  const table = h(
    "table",
    { class: "table crons", "aria-label": "Schedules" },
    h("thead", {}, h("tr", {}, ["Schedule", "Workflow", "Pattern", "Time zone", "Next run", "Last run", "Enabled", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
    tbody,
  );
  const empty = h("p", { class: "empty", hidden: true }, "No schedules yet.");
  outlet.append(
    h("div", { class: "view-head" }, h("h1", {}, "Schedules")),
    errors,
    messages,
    can.cronCreate ? addForm() : null,
    h("div", { class: "table-wrap" }, table),
    empty,
  );

  function addForm() {
    const ids = { wf: uid("cwf"), pattern: uid("cpat"), id: uid("cid"), tz: uid("ctz") };
    const wf = h("select", { id: ids.wf, name: "workflow", required: true });
    app.workflows.then((list) => wf.replaceChildren(...list.map((w) => h("option", { value: w.key }, w.key))), () => {});
    const pattern = h("input", { id: ids.pattern, name: "pattern", required: true, placeholder: "*/5 * * * *", class: "mono", autocomplete: "off" });
    const cronId = h("input", { id: ids.id, name: "cronId", placeholder: "(generated)", autocomplete: "off" });
    const tz = h("input", { id: ids.tz, name: "timezone", placeholder: "UTC", autocomplete: "off" });
    const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Add schedule");
    const form = h(
      "form",
      { class: "panel cron-form", "aria-label": "Add a schedule" },
      h("h2", {}, "Add a schedule"),
      h(
        "div",
        { class: "row" },
        h("div", { class: "field" }, h("label", { for: ids.wf }, "Workflow"), wf),
        h("div", { class: "field" }, h("label", { for: ids.pattern }, "Cron pattern"), pattern),
        h("div", { class: "field" }, h("label", { for: ids.id }, "Schedule id (optional)"), cronId),
        h("div", { class: "field" }, h("label", { for: ids.tz }, "Time zone (optional)"), tz),
      ),
      h("p", { class: "hint" }, "Five fields (minute hour day month weekday), or six with seconds first. Evaluated in UTC unless a time zone is given."),
      h("div", { class: "buttons" }, submit),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(submit, async () => {
        errors.replaceChildren();
        const params = { workflow: wf.value, pattern: pattern.value.trim() };
        if (cronId.value.trim()) params.cronId = cronId.value.trim();
        if (tz.value.trim()) params.timezone = tz.value.trim();
        try {
          const row = await rpc("cronCreate", params);
          messages.replaceChildren(notice(`Schedule ${row.cronId} added: ${row.pattern} for ${row.workflow}`));
          pattern.value = "";
          cronId.value = "";
          load();
        } catch (err) {
          errors.replaceChildren(errorBox(err, "Could not add the schedule:"));
        }
      });
    });
    return form;
  }

  function row(cron) {
    const actions = [];
    if (can.cronRun) {
      const run = h("button", { type: "button", class: "btn", "aria-label": `Run ${cron.cronId} now` }, "Run now");
      run.dataset.key = `run-${cron.cronId}`;
      run.addEventListener("click", () =>
        busy(run, async () => {
          try {
            const started = await rpc("cronRun", { cronId: cron.cronId });
            messages.replaceChildren(
              h("div", { class: "alert alert-ok", role: "status" }, `Schedule ${cron.cronId} triggered: run `,
                started && started.runId ? h("a", { href: app.runHref(started.runId), "data-route": "", class: "mono" }, shortId(started.runId)) : "started"),
            );
            load();
          } catch (err) {
            errors.replaceChildren(errorBox(err, `Could not run ${cron.cronId}:`));
          }
        }),
      );
      actions.push(run);
    }
    if (can.cronDelete) {
      const del = confirmButton("Remove", "Confirm remove", (btn) =>
        busy(btn, async () => {
          try {
            await rpc("cronDelete", { cronId: cron.cronId });
            messages.replaceChildren(notice(`Schedule ${cron.cronId} removed`));
            load();
          } catch (err) {
            errors.replaceChildren(errorBox(err, `Could not remove ${cron.cronId}:`));
          }
        }), "btn btn-danger", `del-${cron.cronId}`);
      del.setAttribute("aria-label", `Remove ${cron.cronId}`);
      actions.push(del);
    }
    const err = cron.errorJson ? parseMaybe(cron.errorJson) : null;
    return h(
      "tr",
      { dataset: { cronId: cron.cronId } },
      h("td", { "data-label": "Schedule", class: "mono" }, cron.cronId, err ? h("div", { class: "field-error" }, (err && err.message) || String(cron.errorJson)) : null),
      h("td", { "data-label": "Workflow" }, cron.workflow || cron.workflowPath),
      h("td", { "data-label": "Pattern", class: "mono" }, cron.pattern),
      h("td", { "data-label": "Time zone" }, cron.timezone || "UTC"),
      h("td", { "data-label": "Next run" }, timeEl(cron.nextRunAtMs)),
      h("td", { "data-label": "Last run" }, timeEl(cron.lastRunAtMs)),
      h("td", { "data-label": "Enabled" }, cron.enabled ? "yes" : "no"),
      h("td", { "data-label": "Actions", class: "actions" }, actions.length ? actions : h("span", { class: "muted" }, "—")),
    );
  }

  let seq = 0;
  async function load() {
    const mine = ++seq;
    let rows;
    try {
      rows = await rpc("cronList", {});
    } catch (err) {
      if (mine === seq) errors.replaceChildren(errorBox(err, "Could not list schedules:"));
      return;
    }
    if (mine !== seq) return;
    keepFocus(table, () => tbody.replaceChildren(...rows.map(row)));
    table.hidden = rows.length === 0;
    empty.hidden = rows.length > 0;
  }
  load();
  const unsubscribe = changes.subscribe(["crons"], load);
  return () => unsubscribe();
}
