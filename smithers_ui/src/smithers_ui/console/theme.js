// Light and dark themes: the shell applies ?theme=, the stored choice or the system's before
// first paint; the toggle switches and stores `smithers-theme`.

import { h } from "./dom.js";

const KEY = "smithers-theme";

export function currentTheme() {
  return document.documentElement.dataset.theme === "dark" ? "dark" : "light";
}

export function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  try {
    localStorage.setItem(KEY, theme);
  } catch {
    /* storage refused: the choice lasts for this page */
  }
}

/** The toggle button; its label names the theme it switches to. */
export function themeToggle() {
  const btn = h("button", { type: "button", class: "btn btn-ghost theme-toggle" });
  const label = () => {
    const next = currentTheme() === "dark" ? "light" : "dark";
    btn.textContent = next === "dark" ? "☾ Dark" : "☀ Light";
    btn.setAttribute("aria-label", `Switch to ${next} theme`);
    btn.title = `Switch to ${next} theme`;
  };
  btn.addEventListener("click", () => {
    setTheme(currentTheme() === "dark" ? "light" : "dark");
    label();
  });
  label();
  return btn;
}
