// Launch a run: choose a workflow, fill the form generated from its inputSchema.

import { rpc } from "./api.js";
import { h, busy, errorBox, uid } from "./dom.js";
import { schemaForm } from "./schema_form.js";

/**
 * `app` = {can, workflows: Promise<list>, onLaunched(result)}; `fixedWorkflow` launches one
 * workflow only (its page). Returns the disposer.
 */
export function launchView({ params, router, outlet }, app, { fixedWorkflow = null, heading = "Launch a run" } = {}) {
  const errors = h("div", { class: "errors" });
  const body = h("div", { class: "launch-body" });
  const selId = uid("wf");
  const picker = h("select", { id: selId, name: "workflow" });
  outlet.append(
    h("div", { class: "view-head" }, h("h1", {}, heading)),
    fixedWorkflow
      ? null
      : h("div", { class: "field field-wide" }, h("label", { for: selId }, "Workflow"), picker),
    errors,
    body,
  );
  if (!app.can.launchRun && !fixedWorkflow) {
    errors.replaceChildren(h("div", { class: "alert alert-warn", role: "status" }, "You may not launch runs (needs the run:write scope)."));
  }
  let workflows = [];
  app.workflows.then(
    (list) => {
      workflows = list;
      if (fixedWorkflow) {
        draw(list.find((w) => w.key === fixedWorkflow) || { key: fixedWorkflow, inputSchema: null });
        return;
      }
      picker.replaceChildren(
        h("option", { value: "" }, "Choose a workflow…"),
        ...list.map((w) => h("option", { value: w.key }, w.key)),
      );
      const wanted = (params && params[0]) || "";
      picker.value = list.some((w) => w.key === wanted) ? wanted : list.length === 1 ? list[0].key : "";
      pick();
    },
    (err) => errors.replaceChildren(errorBox(err, "Could not list workflows:")),
  );
  picker.addEventListener("change", () => {
    history.replaceState(null, "", router.href(picker.value ? `/launch/${encodeURIComponent(picker.value)}` : "/launch"));
    pick();
  });

  function pick() {
    const wf = workflows.find((w) => w.key === picker.value);
    if (wf) draw(wf);
    else body.replaceChildren(h("p", { class: "muted" }, "Choose the workflow to run."));
  }

  function draw(wf) {
    const form = schemaForm(wf.inputSchema);
    const submit = h("button", { type: "submit", class: "btn btn-primary" }, `Launch ${wf.key}`);
    const result = h("div", { class: "errors" });
    const el = h(
      "form",
      { class: "panel launch-form", "aria-label": `Launch ${wf.key}`, novalidate: true },
      h("h2", {}, wf.key),
      wf.description ? h("p", { class: "muted" }, wf.description) : null,
      form.element,
      result,
      h("div", { class: "buttons" }, submit),
    );
    el.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(submit, async () => {
        result.replaceChildren();
        let input;
        try {
          input = form.read();
        } catch (err) {
          result.replaceChildren(h("div", { class: "alert alert-error", role: "alert" }, err.message));
          return;
        }
        try {
          const launched = await rpc("launchRun", { workflow: wf.key, input });
          app.onLaunched(launched, result);
        } catch (err) {
          result.replaceChildren(errorBox(err, "Launch refused:"));
        }
      });
    });
    body.replaceChildren(el);
  }
  return () => {};
}
