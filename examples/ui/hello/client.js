// The hello workflow's own page (examples/smithers.toml: ui = { entry = "ui/hello" }).
// Served by plugin smithers_ui at /workflows/hello with the gateway's boot config; it talks to
// the gateway with the browser's session cookie (sign in at /console/signin first).
const boot = globalThis.__SMITHERS_GATEWAY_UI__;
const app = document.getElementById("app");

const style = document.createElement("link");
style.rel = "stylesheet";
style.href = boot.assetBasePath + "style.css";
document.head.append(style);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

async function rpc(method, params) {
  const response = await fetch(`${boot.rpcPath}/${method}`, {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(params),
  });
  const body = await response.json();
  if (!body.ok) throw new Error(`${body.error.code}: ${body.error.message}`);
  return body.payload;
}

const status = el("p", { role: "status" });
const list = el("ul", { class: "runs" });
const name = el("input", { id: "name", name: "name", value: "world", required: "" });
const form = el(
  "form",
  {},
  el("label", { for: "name" }, "Who to greet"),
  name,
  el("button", { type: "submit" }, "Say hello"),
);

async function refresh() {
  try {
    const runs = await rpc("listRuns", { filter: { workflow: boot.workflowKey, limit: 10 } });
    list.replaceChildren(
      ...runs.map((run) =>
        el(
          "li",
          {},
          el("a", { href: `/console/runs/${encodeURIComponent(run.runId)}` }, run.runId.slice(0, 8)),
          " ",
          el("span", { class: `state ${run.status}` }, run.status),
        ),
      ),
    );
    status.textContent = "";
  } catch (error) {
    const signIn = el("a", { href: `/console/signin?next=${encodeURIComponent(location.pathname)}` }, "Sign in");
    status.replaceChildren(`${error.message} `, signIn);
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const run = await rpc("launchRun", { workflow: boot.workflowKey, input: { name: name.value } });
    status.textContent = `Started ${run.runId}`;
    refresh();
  } catch (error) {
    status.textContent = error.message;
  }
});

app.replaceChildren(el("h1", {}, "Hello"), form, status, el("h2", {}, "Latest runs"), list);
refresh();
// the REST facade's change stream says when runs changed (plugin smithers_rest)
const changes = new EventSource("/v1/api/stream");
changes.addEventListener("change", (event) => {
  if (JSON.parse(event.data).collections.includes("runs")) refresh();
});
