// A workflow's own page (register(..., ui=True)): its launch form and its runs.

import { onUnauthorized, rpc, signInUrl } from "./api.js";
import { h } from "./dom.js";
import { Router } from "./router.js";
import { themeToggle } from "./theme.js";
import { launchView } from "./launch_view.js";
import { runsView } from "./runs_view.js";

export function workflowPage(root, boot) {
  const key = boot.workflowKey;
  const props = boot.props || {};
  const consolePath = (props.consolePath || "/console").replace(/\/+$/, "");
  const banner = h("div", { class: "banner" });
  const launchOutlet = h("div", { class: "wf-launch" });
  const runsOutlet = h("div", { class: "wf-runs" });
  const main = h("main", { id: "main", tabindex: "-1", class: "wf-page" }, launchOutlet, runsOutlet);
  root.replaceChildren(
    h("a", { class: "skip", href: "#main" }, "Skip to content"),
    h(
      "header",
      { class: "topbar" },
      h("span", { class: "brand" }, h("span", { class: "logo", "aria-hidden": "true" }), props.title || key),
      h("nav", { class: "nav", "aria-label": "Main" }, h("a", { href: `${consolePath}/` }, "Operator console")),
      h("div", { class: "topbar-end" }, themeToggle()),
    ),
    banner,
    main,
  );
  document.title = `${key} - Smithers`;
  let warned = false;
  onUnauthorized(() => {
    if (warned) return;
    warned = true;
    banner.replaceChildren(
      h("div", { class: "alert alert-warn", role: "alert" }, "Sign in to launch and follow runs: ",
        h("a", { href: signInUrl() }, "Sign in")),
    );
  });
  // a public page: what the caller may do is only known from the server's answers
  const can = new Proxy({}, { get: () => true });
  const router = new Router(boot.mountPath, [], main);
  const workflows = rpc("listWorkflows", {});
  workflows.catch(() => {});
  const app = {
    can,
    identity: null,
    workflows,
    runHref: (id) => `${consolePath}/runs/${encodeURIComponent(id)}`,
    setCount() {},
    onLaunched(result, slot) {
      slot.replaceChildren(
        h("div", { class: "alert alert-ok", role: "status" }, "Run started: ",
          h("a", { href: app.runHref(result.runId), class: "mono" }, result.runId)),
      );
    },
  };
  const query = new URLSearchParams(location.search);
  launchView({ params: [key], router, outlet: launchOutlet, query }, app, { fixedWorkflow: key, heading: key });
  runsView({ params: [], router, outlet: runsOutlet, query }, app, { fixedWorkflow: key, heading: `Runs of ${key}` });
}
