// The console's frame: skip link, top bar (navigation, who is signed in, theme, sign out).

import { logout, signInUrl } from "./api.js";
import { h, busy, errorBox } from "./dom.js";
import { changes } from "./live.js";
import { themeToggle } from "./theme.js";

/**
 * Builds the page frame in `root`; returns {main, setActive(path), setBanner(node)}.
 * `links` are [path, label, key] entries (already filtered by what the caller may do).
 */
export function frame(root, { router, identity, links, title = "Smithers" }) {
  const nav = h("nav", { class: "nav", "aria-label": "Main" });
  const items = links.map(([path, label, key]) => {
    const count = h("span", { class: "count", hidden: true });
    const a = h("a", { href: router.href(path), "data-route": "", dataset: { key } }, label, count);
    a.count = count;
    nav.append(a);
    return [path, a];
  });
  const live = h("span", { class: "live", role: "status", title: "List updates" });
  changes.onState((state) => {
    live.dataset.state = state;
    live.textContent = { live: "Live", polling: "Polling", connecting: "Connecting…" }[state] || "";
  });
  const signOut = h("button", { type: "button", class: "btn btn-ghost" }, "Sign out");
  const banner = h("div", { class: "banner" });
  signOut.addEventListener("click", () =>
    busy(signOut, async () => {
      try {
        await logout();
        location.assign(signInUrl(router.href("/")));
      } catch (err) {
        banner.replaceChildren(errorBox(err));
      }
    }),
  );
  const who = identity
    ? h(
        "span",
        { class: "who", title: (identity.scopes || []).join(" ") },
        h("span", { class: "who-user" }, identity.userId || "(no user id)"),
        " ",
        h("span", { class: "muted" }, identity.role || ""),
      )
    : null;
  const main = h("main", { id: "main", tabindex: "-1" });
  root.replaceChildren(
    h("a", { class: "skip", href: "#main" }, "Skip to content"),
    h(
      "header",
      { class: "topbar" },
      h("a", { class: "brand", href: router.href("/"), "data-route": "" }, h("span", { class: "logo", "aria-hidden": "true" }), title),
      nav,
      h("div", { class: "topbar-end" }, live, who, themeToggle(), identity ? signOut : null),
    ),
    banner,
    main,
  );
  return {
    main,
    banner,
    setActive(path) {
      for (const [p, a] of items) {
        const active = p === "/" ? path === "/" || path.startsWith("/runs") : path.startsWith(p);
        if (active) a.setAttribute("aria-current", "page");
        else a.removeAttribute("aria-current");
      }
    },
    setCount(key, n) {
      for (const [, a] of items) {
        if (a.dataset.key !== key) continue;
        a.count.hidden = !n;
        a.count.textContent = n ? String(n) : "";
        a.setAttribute("aria-label", n ? `${a.firstChild.textContent} (${n} pending)` : a.firstChild.textContent);
      }
    },
  };
}

/** Moves focus to the view's heading after a navigation (keyboard and screen readers). */
export function focusHeading(main) {
  const heading = main.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}
