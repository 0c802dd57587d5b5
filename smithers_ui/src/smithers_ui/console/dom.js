// DOM building without HTML strings: every value goes in as text or as an attribute.

/**
 * `h("a", {href, class, on: {click}, dataset: {...}}, child...)`: an element. Children are
 * nodes, strings (text nodes), arrays of children, or null/false (skipped).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    else if (name === "text") el.textContent = String(value);
    else if (name === "on") for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "value" || name === "checked" || name === "selected") el[name] = value;
    else if (name === "style") throw new Error("inline style attributes are not allowed (CSP)");
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

let counter = 0;
/** A unique element id (for label/aria wiring). */
export function uid(prefix = "f") {
  counter += 1;
  return `${prefix}-${counter}`;
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export function fmtTime(ms) {
  if (ms === null || ms === undefined) return "—";
  return dateFormat.format(new Date(ms));
}

/** A time element: the local date and time, ISO in `datetime`. */
export function timeEl(ms) {
  if (ms === null || ms === undefined) return h("span", { class: "muted" }, "—");
  const iso = new Date(ms).toISOString();
  return h("time", { datetime: iso, title: iso }, fmtTime(ms));
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function shortId(id) {
  return String(id || "").slice(0, 8);
}

export const TERMINAL = new Set(["finished", "failed", "cancelled", "continued"]);
export const RUN_STATUSES = [
  "running", "waiting-approval", "waiting-event", "waiting-timer",
  "finished", "failed", "cancelled", "continued",
];

/** A coloured status label (runs and nodes share the palette). */
export function badge(status) {
  const value = String(status || "unknown");
  return h("span", { class: ["badge", `st-${value.replace(/[^a-z-]/gi, "")}`] }, value);
}

/** An error from the server (code, message, issues) as an alert. */
export function errorBox(err, prefix = "") {
  const details = err && err.details ? err.details : {};
  const issues = Array.isArray(details.issues) ? details.issues : [];
  const extra = [];
  if (details.requiredScope) extra.push(`required scope: ${details.requiredScope}`);
  if (Array.isArray(details.options)) extra.push(`options: ${details.options.join(", ")}`);
  return h(
    "div",
    { class: "alert alert-error", role: "alert" },
    prefix ? h("span", {}, `${prefix} `) : null,
    h("strong", { class: "code" }, (err && err.code) || "ERROR"),
    " ",
    h("span", { class: "message" }, (err && err.message) || String(err)),
    extra.length ? h("div", { class: "muted" }, extra.join("; ")) : null,
    issues.length
      ? h(
          "ul",
          { class: "issues" },
          issues.map((i) =>
            h("li", {}, h("code", {}, (i.loc || []).join(".") || "(input)"), ": ", i.msg || ""),
          ),
        )
      : null,
  );
}

/** A success or info line (polite live region). */
export function notice(text, kind = "ok") {
  return h("div", { class: ["alert", `alert-${kind}`], role: "status" }, text);
}

export function jsonBlock(value) {
  let text;
  try {
    text = JSON.stringify(value, null, 2);
  } catch {
    text = String(value);
  }
  return h("pre", { class: "json" }, text === undefined ? "undefined" : text);
}

/** JSON text that may be null/garbage: the parsed value or the text itself. */
export function parseMaybe(text) {
  if (typeof text !== "string") return text;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

const armed = new Map(); // data-key -> when the confirmation expires (survives re-renders)
const ARM_MS = 5000;

/**
 * A button that asks once more before `action(btn)` (no modal dialog). `key` identifies it
 * across live re-renders of its list, so an armed button stays armed.
 */
export function confirmButton(label, confirmLabel, action, cls = "btn", key = null) {
  const btn = h("button", { type: "button", class: cls }, label);
  if (key) btn.dataset.key = key;
  let timer = null;
  const set = (on) => {
    btn.textContent = on ? confirmLabel : label;
    btn.classList.toggle("btn-armed", on);
    btn.dataset.armed = on ? "true" : "false";
  };
  const disarm = () => {
    clearTimeout(timer);
    if (key) armed.delete(key);
    set(false);
  };
  const arm = (ms) => {
    set(true);
    clearTimeout(timer);
    timer = setTimeout(disarm, ms);
  };
  const left = key && armed.has(key) ? armed.get(key) - Date.now() : 0;
  if (left > 0) arm(left);
  btn.addEventListener("click", () => {
    if (btn.dataset.armed !== "true") {
      if (key) armed.set(key, Date.now() + ARM_MS);
      arm(ARM_MS);
      return;
    }
    disarm();
    action(btn);
  });
  return btn;
}

/** Runs `fn` with `btn` disabled (and marked busy) until it settles. */
export async function busy(btn, fn) {
  btn.disabled = true;
  btn.setAttribute("aria-busy", "true");
  try {
    return await fn();
  } finally {
    btn.disabled = false;
    btn.removeAttribute("aria-busy");
  }
}

/** A section with a heading (h2) and its body. */
export function section(title, ...body) {
  const id = uid("sec");
  return h("section", { class: "panel", "aria-labelledby": id }, h("h2", { id }, title), ...body);
}
