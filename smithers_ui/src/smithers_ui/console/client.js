// The operator console (and the sign-in and workflow pages): plain ES modules, no build step.

import { onUnauthorized, rpc, signInUrl } from "./api.js";
import { h } from "./dom.js";
import { focusHeading, frame } from "./layout.js";
import { changes } from "./live.js";
import { Router } from "./router.js";
import { approvalsView } from "./approvals_view.js";
import { cronsView } from "./crons_view.js";
import { launchView } from "./launch_view.js";
import { runView } from "./run_view.js";
import { runsView } from "./runs_view.js";
import { signInView } from "./signin_view.js";
import { workflowPage } from "./workflow_view.js";

const boot = globalThis.__SMITHERS_GATEWAY_UI__ || { kind: "operator", mountPath: "/", props: {} };
const root = document.getElementById("app");

/** The console's own stylesheet (theme.css, linked by the shell, holds the tokens). */
function loadStyles() {
  return new Promise((resolve) => {
    const link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = `${boot.assetBasePath || "./"}console.css`;
    link.addEventListener("load", resolve);
    link.addEventListener("error", resolve);
    setTimeout(resolve, 3000);
    document.head.append(link);
  });
}

function consoleApp() {
  const props = boot.props || {};
  const can = props.can || {};
  const identity = props.identity || null;
  const links = [
    ["/", "Runs", "runs", can.listRuns],
    ["/approvals", "Approvals", "approvals", can.listApprovals],
    ["/launch", "Launch", "launch", can.launchRun],
    ["/crons", "Schedules", "crons", can.cronList],
  ].filter((l) => l[3]);
  const outlet = h("div", { class: "view" });
  let ui = null;
  let workflows = null;
  const app = {
    can,
    identity,
    get workflows() {
      if (!workflows) {
        workflows = rpc("listWorkflows", {});
        workflows.catch(() => {
          workflows = null;
        });
      }
      return workflows;
    },
    runHref: (id) => router.href(`/runs/${encodeURIComponent(id)}`),
    setCount: (key, n) => ui.setCount(key, n),
    onLaunched: (result) => router.go(`/runs/${encodeURIComponent(result.runId)}`),
  };
  const notFound = ({ outlet: out }) => {
    out.append(h("h1", {}, "Not found"), h("p", {}, "This page does not exist. ", h("a", { href: router.href("/"), "data-route": "" }, "Back to the runs")));
  };
  const refused = (what) => ({ outlet: out }) => {
    out.append(h("h1", {}, what), h("div", { class: "alert alert-warn", role: "status" }, "Your token's scopes do not allow this page."));
  };
  const routes = [
    [/^\/(?:runs\/?)?$/, (ctx) => (can.listRuns ? runsView(ctx, app) : refused("Runs")(ctx))],
    [/^\/runs\/([^/]+)\/?$/, (ctx) => runView(ctx, app)],
    [/^\/approvals\/?$/, (ctx) => (can.listApprovals ? approvalsView(ctx, app) : refused("Approvals")(ctx))],
    [/^\/launch(?:\/([^/]+))?\/?$/, (ctx) => launchView(ctx, app)],
    [/^\/crons\/?$/, (ctx) => (can.cronList ? cronsView(ctx, app) : refused("Schedules")(ctx))],
    [/.*/, notFound],
  ];
  const router = new Router(boot.mountPath || "/", routes, outlet);
  ui = frame(root, { router, identity, links, title: props.title || "Smithers" });
  ui.main.append(outlet);
  let first = true;
  router.onChange((path) => {
    ui.setActive(path);
    const heading = outlet.querySelector("h1");
    document.title = `${heading ? heading.textContent.trim() : "Console"} - Smithers console`;
    if (!first) focusHeading(ui.main);
    first = false;
  });
  onUnauthorized(() => {
    ui.banner.replaceChildren(
      h("div", { class: "alert alert-warn", role: "alert" }, "Your session has ended. ",
        h("a", { href: signInUrl() }, "Sign in again")),
    );
  });
  if (can.listApprovals) {
    const count = () => rpc("listApprovals", {}).then((items) => ui.setCount("approvals", items.length), () => {});
    count();
    changes.subscribe(["approvals"], count);
  }
  changes.subscribe(["workflows"], () => {
    workflows = null;
  });
  router.render();
}

async function main() {
  await loadStyles();
  const props = boot.props || {};
  if (props.signIn) signInView(root, boot);
  else if (boot.kind === "workflow") workflowPage(root, boot);
  else consoleApp();
  document.documentElement.dataset.ready = "true";
}

main().catch((err) => {
  root.replaceChildren(h("div", { class: "alert alert-error", role: "alert" }, `The console failed to start: ${err.message}`));
  console.error(err);
});
