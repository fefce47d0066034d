// The theme toggle: system -> light -> dark -> system. The choice is kept in
// localStorage and in the `theme` cookie, which the server reads to put data-theme on
// <html> before the first paint (no flash). Without JavaScript the page follows
// prefers-color-scheme and the button stays hidden.

const root = document.documentElement;
const ORDER = ["system", "light", "dark"];
const YEAR = 365 * 24 * 3600;

function current() {
  return root.dataset.theme === "light" || root.dataset.theme === "dark" ? root.dataset.theme : "system";
}

function remember(theme) {
  const secure = location.protocol === "https:" ? "; Secure" : "";
  if (theme === "system") {
    localStorage.removeItem("theme");
    document.cookie = `theme=; Path=/; Max-Age=0; SameSite=Strict${secure}`;
  } else {
    localStorage.setItem("theme", theme);
    document.cookie = `theme=${theme}; Path=/; Max-Age=${YEAR}; SameSite=Strict${secure}`;
  }
}

function apply(theme) {
  if (theme === "system") {
    delete root.dataset.theme;
  } else {
    root.dataset.theme = theme;
  }
}

function label(button) {
  const theme = current();
  button.textContent = `Theme: ${theme}`;
  button.setAttribute("aria-label", `Colour theme: ${theme}. Change it`);
}

// A choice made in another tab, or a cookie that was cleared while localStorage kept it.
const stored = localStorage.getItem("theme");
if ((stored === "light" || stored === "dark") && current() === "system") {
  apply(stored);
  remember(stored);
}

const button = document.getElementById("theme-toggle");
if (button) {
  button.hidden = false;
  label(button);
  button.addEventListener("click", () => {
    const next = ORDER[(ORDER.indexOf(current()) + 1) % ORDER.length];
    apply(next);
    remember(next);
    label(button);
  });
}
