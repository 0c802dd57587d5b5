// History-API routing below the mount path: every sub-path serves the same shell.

export class Router {
  /**
   * @param {string} mountPath where the app is mounted ("/console" or "/")
   * @param {Array<[RegExp, Function]>} routes path (below the mount) -> view(ctx)
   * @param {HTMLElement} outlet where views render
   */
  constructor(mountPath, routes, outlet) {
    this.base = mountPath.replace(/\/+$/, "");
    this.routes = routes;
    this.outlet = outlet;
    this.dispose = null;
    this.listeners = new Set();
    window.addEventListener("popstate", () => this.render());
    document.addEventListener("click", (event) => this.intercept(event));
  }

  /** The current path below the mount, always starting with "/". */
  path() {
    const full = location.pathname;
    const rest = full.startsWith(this.base) ? full.slice(this.base.length) : full;
    return rest.startsWith("/") ? rest : `/${rest}`;
  }

  /** The address of `path` (below the mount), with an optional query object. */
  href(path, query) {
    const qs = query ? new URLSearchParams(clean(query)).toString() : "";
    return `${this.base}${path}${qs ? `?${qs}` : ""}`;
  }

  go(path, query, { replace = false } = {}) {
    const url = this.href(path, query);
    if (replace) history.replaceState(null, "", url);
    else history.pushState(null, "", url);
    this.render();
  }

  /** Updates the query string without rendering again. */
  setQuery(query) {
    const qs = new URLSearchParams(clean(query)).toString();
    history.replaceState(null, "", `${location.pathname}${qs ? `?${qs}` : ""}`);
  }

  onChange(fn) {
    this.listeners.add(fn);
  }

  intercept(event) {
    if (event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const link = event.target instanceof Element ? event.target.closest("a[data-route]") : null;
    if (!link || link.target) return;
    const url = new URL(link.href, location.href);
    if (url.origin !== location.origin || !url.pathname.startsWith(this.base)) return;
    event.preventDefault();
    history.pushState(null, "", url.pathname + url.search);
    this.render();
  }

  render() {
    if (typeof this.dispose === "function") {
      try {
        this.dispose();
      } catch (err) {
        console.error(err);
      }
    }
    this.dispose = null;
    const path = this.path();
    const query = new URLSearchParams(location.search);
    for (const [pattern, view] of this.routes) {
      const match = pattern.exec(path);
      if (!match) continue;
      this.outlet.replaceChildren();
      const params = (match.slice(1) || []).map((p) => decodeURIComponent(p));
      this.dispose = view({ params, query, router: this, outlet: this.outlet }) || null;
      this.listeners.forEach((fn) => fn(path));
      return;
    }
  }
}

function clean(query) {
  const out = {};
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== null && v !== undefined && v !== "") out[k] = String(v);
  }
  return out;
}
