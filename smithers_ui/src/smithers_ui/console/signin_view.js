// The public sign-in page: a plain GET form to /v1/auth/session (works without JavaScript);
// with JavaScript the token is checked first so a wrong one is reported here.

import { h, busy, errorBox } from "./dom.js";
import { themeToggle } from "./theme.js";

/** `next` when it is a same-origin path, else the console. */
export function safeNext(value, fallback) {
  if (!value || !value.startsWith("/") || value.startsWith("//") || value.includes("\\")) return fallback;
  return value;
}

async function check(token) {
  let response;
  try {
    response = await fetch("/v1/rpc/health", {
      method: "POST",
      credentials: "omit",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: "{}",
    });
  } catch {
    return null; // let the form try
  }
  if (response.status !== 401) return null;
  try {
    const body = await response.json();
    return body.error || { code: "UNAUTHORIZED", message: "Invalid token" };
  } catch {
    return { code: "UNAUTHORIZED", message: "Invalid token" };
  }
}

export function signInView(root, boot) {
  const props = boot.props || {};
  const consolePath = (props.consolePath || "/console").replace(/\/?$/, "/");
  const next = safeNext(new URLSearchParams(location.search).get("next"), consolePath);
  const token = h("input", {
    id: "token", name: "token", type: "password", required: true,
    autocomplete: "current-password", spellcheck: "false", autofocus: true,
  });
  const errors = h("div", { class: "errors", "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "btn btn-primary btn-block" }, "Sign in");
  const form = h(
    "form",
    { method: "get", action: "/v1/auth/session", class: "signin-form", "aria-label": "Sign in" },
    h("div", { class: "field" }, h("label", { for: "token" }, "Access token"), token,
      h("div", { class: "hint" }, "A token from ", h("code", {}, "smithers token issue"), " or the one the gateway printed at start-up.")),
    h("input", { type: "hidden", name: "next", value: next }),
    errors,
    submit,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!token.value.trim()) {
      errors.replaceChildren(h("div", { class: "alert alert-error", role: "alert" }, "Enter a token."));
      token.focus();
      return;
    }
    busy(submit, async () => {
      errors.replaceChildren();
      const failure = await check(token.value.trim());
      if (failure) {
        errors.replaceChildren(errorBox(failure, "Sign-in failed:"));
        token.select();
        return;
      }
      form.submit();
    });
  });
  root.replaceChildren(
    h(
      "main",
      { id: "main", class: "signin" },
      h(
        "div",
        { class: "signin-card panel" },
        h("div", { class: "signin-top" }, h("span", { class: "brand" }, h("span", { class: "logo", "aria-hidden": "true" }), "Smithers"), themeToggle()),
        h("h1", {}, "Sign in"),
        h("p", { class: "muted" }, "The operator console needs a token with the run:read scope."),
        form,
      ),
    ),
  );
  document.title = "Sign in - Smithers";
  token.focus();
}
