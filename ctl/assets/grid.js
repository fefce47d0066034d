// A table's rows: what the server-drawn page cannot do alone. The WAI-ARIA grid keyboard
// (one Tab stop, arrows, Home/End, PageUp/PageDown), row selection and copying (through
// GET .../copy, the extension's copy_rows), "show all" (GET .../cell, read_cell), the JSON
// panel, UTC or local times, shift-click to add a sort column, and the filter form's
// operators per column. Without it the page still filters, sorts and pages.

const grid = document.getElementById("grid");
const status = document.getElementById("grid-status");
const panel = document.getElementById("cell-panel");
const PAGE_ROWS = 10;

function say(text) {
  if (status) status.textContent = text;
}

/* ---------- The filter form: each column offers only the operators it takes. ---------- */

const form = document.getElementById("grid-query");
const blankOps = form ? Array.from(form.querySelectorAll("li.blank select.fo option")).map((o) => [o.value, o.textContent]) : [];
const PLACEHOLDERS = { number: "a number", time: "2026-01-31 14:00:00+00", json: "JSON, such as {\"a\": 1}", text: "value" };
const NO_VALUE = new Set(["is_null", "not_null"]);

function fitCondition(item, keepOp) {
  const column = item.querySelector("select.fc");
  const op = item.querySelector("select.fo");
  const value = item.querySelector("input.fv");
  const chosen = column.selectedOptions[0];
  if (chosen && chosen.dataset.ops && !keepOp) {
    const allowed = new Set(chosen.dataset.ops.split(" "));
    const previous = op.value;
    op.replaceChildren(...blankOps.filter(([name]) => allowed.has(name)).map(([name, words]) => new Option(words, name)));
    op.value = allowed.has(previous) ? previous : op.options[0].value;
  }
  const kind = chosen ? chosen.dataset.kind : "text";
  value.placeholder = PLACEHOLDERS[kind] || "value";
  value.inputMode = kind === "number" && op.value !== "in" ? "decimal" : "text";
  // Read-only, not disabled: fc, fo and fv are sent in step, one of each per condition.
  value.readOnly = NO_VALUE.has(op.value);
  if (value.readOnly) value.value = "";
}

if (form) {
  for (const item of form.querySelectorAll("li.condition")) {
    fitCondition(item, true);
    item.querySelector("select.fc").addEventListener("change", () => fitCondition(item, false));
    item.querySelector("select.fo").addEventListener("change", () => fitCondition(item, true));
    const remove = item.querySelector("button.remove-condition");
    if (remove) {
      remove.hidden = false;
      remove.addEventListener("click", () => {
        item.remove();
        form.requestSubmit();
      });
    }
  }
  form.addEventListener("submit", () => {
    // The blank row, left blank, sends nothing, so the address stays short.
    for (const item of form.querySelectorAll("li.condition")) {
      if (item.querySelector("select.fc").value === "") {
        for (const field of item.querySelectorAll("select, input")) field.disabled = true;
      }
    }
    if (form.querySelectorAll("select.fc:not([disabled])").length < 2) {
      form.querySelector("#grid-match").disabled = true;
    }
    busy();
  });
}

function busy() {
  if (grid) grid.setAttribute("aria-busy", "true");
  document.body.classList.add("loading");
  say("Loading…");
}

if (grid) {
  const api = grid.dataset.api;
  const tools = document.getElementById("grid-tools");
  tools.hidden = false;

  /* ---------- The grid keyboard (WAI-ARIA grid pattern) ---------- */

  const rows = Array.from(grid.rows);
  const cellAt = (r, c) => rows[r] && rows[r].cells[c];
  // Everything focusable inside the grid is reached through its cell, not by Tab.
  for (const el of grid.querySelectorAll("a, button, input, summary")) el.tabIndex = -1;
  for (const row of rows) for (const cell of row.cells) cell.tabIndex = -1;
  let at = { r: rows.length > 1 ? 1 : 0, c: Math.min(1, rows[0].cells.length - 1) };
  cellAt(at.r, at.c).tabIndex = 0;

  function focusCell(r, c) {
    r = Math.max(0, Math.min(rows.length - 1, r));
    c = Math.max(0, Math.min(rows[r].cells.length - 1, c));
    cellAt(at.r, at.c).tabIndex = -1;
    at = { r, c };
    const cell = cellAt(r, c);
    cell.tabIndex = 0;
    cell.focus({ preventScroll: true });
    cell.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  grid.addEventListener("click", (event) => {
    const cell = event.target.closest("td, th");
    if (!cell || !grid.contains(cell)) return;
    const r = rows.indexOf(cell.parentElement);
    if (r >= 0 && (event.target === cell || !event.target.closest("a, button, input, summary"))) focusCell(r, cell.cellIndex);
    else if (r >= 0) { cellAt(at.r, at.c).tabIndex = -1; at = { r, c: cell.cellIndex }; cell.tabIndex = 0; }
  });

  grid.addEventListener("keydown", (event) => {
    const { r, c } = at;
    const last = rows[r].cells.length - 1;
    const ctrl = event.ctrlKey || event.metaKey;
    let handled = true;
    switch (event.key) {
      case "ArrowRight": focusCell(r, c + 1); break;
      case "ArrowLeft": focusCell(r, c - 1); break;
      case "ArrowDown": focusCell(r + 1, c); break;
      case "ArrowUp": focusCell(r - 1, c); break;
      case "Home": ctrl ? focusCell(0, 0) : focusCell(r, 0); break;
      case "End": ctrl ? focusCell(rows.length - 1, last) : focusCell(r, last); break;
      case "PageDown": focusCell(r + PAGE_ROWS, c); break;
      case "PageUp": focusCell(r - PAGE_ROWS, c); break;
      case "Enter": activate(cellAt(r, c), event); break;
      case " ": toggleRow(cellAt(r, c)); break;
      case "Escape": handled = closePanel(); break;
      default:
        if (ctrl && (event.key === "c" || event.key === "C") && !window.getSelection().toString()) copyCell(cellAt(r, c));
        else handled = false;
    }
    if (handled) event.preventDefault();
  });

  // Enter: the cell's own action, in the order a user expects it.
  function activate(cell, event) {
    const control = cell.querySelector("a.sort, a.fk, button.open-json, button.show-all, summary, a");
    if (!control) return;
    if (control.matches("a.sort") && event.shiftKey) { addSort(control); return; }
    control.click();
  }

  /* ---------- Sorting: shift-click adds a column, or turns it the other way ---------- */

  function addSort(link) {
    const column = link.closest("th").dataset.column;
    const url = new URL(window.location.href);
    const sort = url.searchParams.getAll("sort");
    const name = (s) => s.replace(/:(asc|desc)$/, "");
    const found = sort.findIndex((s) => name(s) === column);
    if (found >= 0) sort[found] = `${column}:${sort[found].endsWith(":asc") ? "desc" : "asc"}`;
    else sort.push(`${column}:asc`);
    url.searchParams.delete("sort");
    url.searchParams.delete("cursor");
    for (const s of sort) url.searchParams.append("sort", s);
    busy();
    window.location.assign(url);
  }

  grid.addEventListener("click", (event) => {
    const link = event.target.closest("a.sort");
    if (link && event.shiftKey) { event.preventDefault(); addSort(link); }
  });
  for (const link of document.querySelectorAll(".pager a, a.sort, a.fk, .refs a")) {
    link.addEventListener("click", (event) => { if (!event.shiftKey && !event.ctrlKey && !event.metaKey) busy(); });
  }

  /* ---------- Selection and copying rows ---------- */

  const boxes = Array.from(grid.querySelectorAll("input.select-row"));
  const all = document.getElementById("select-all");
  const count = document.getElementById("selection-count");
  const copyButtons = Array.from(document.querySelectorAll("[data-copy]"));

  function selected() {
    return boxes.filter((b) => b.checked).map((b) => b.closest("tr"));
  }

  function selectionChanged() {
    for (const box of boxes) box.closest("tr").setAttribute("aria-selected", String(box.checked));
    const n = selected().length;
    if (!count) return;
    count.textContent = n === 0 ? "No rows selected" : `${n} ${n === 1 ? "row" : "rows"} selected`;
    for (const b of copyButtons) b.disabled = n === 0;
    if (all) { all.checked = n > 0 && n === boxes.length; all.indeterminate = n > 0 && n < boxes.length; }
  }

  function toggleRow(cell) {
    const row = cell.parentElement;
    if (row.parentElement.tagName === "THEAD") { if (all) { all.checked = !all.checked; all.dispatchEvent(new Event("change")); } return; }
    const box = row.querySelector("input.select-row");
    if (box) { box.checked = !box.checked; selectionChanged(); say(box.checked ? "Row selected." : "Row unselected."); }
  }

  for (const box of boxes) box.addEventListener("change", selectionChanged);
  if (all) all.addEventListener("change", () => { for (const b of boxes) b.checked = all.checked; selectionChanged(); });

  async function getJson(path) {
    const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    const text = await response.text();
    let body = {};
    try {
      body = JSON.parse(text);
      // The data keeps each number's text (numeric 1.50 stays 1.50, a bigint every digit).
      const exact = JSON.parse(text, (key, value, context) => (typeof value === "number" && context ? JSON.rawJSON(context.source) : value));
      if ("rows" in body) body.rows = exact.rows;
      if ("value" in body) body.value = exact.value;
    } catch { /* not JSON: the status says what failed */ }
    if (!response.ok) throw new Error(body.message || `The server answered ${response.status}.`);
    return body;
  }

  const field = (v) => (v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
  const csvField = (v) => (v === null || v === undefined ? "" : `"${field(v).replaceAll("\"", "\"\"")}"`);
  const tsvField = (v) => { const s = field(v); return /[\t\n\r"]/.test(s) ? `"${s.replaceAll("\"", "\"\"")}"` : s; };

  const FORMATS = {
    tsv: (copy) => [copy.columns.join("\t"), ...copy.rows.map((row) => copy.columns.map((c) => tsvField(row[c])).join("\t"))].join("\n"),
    csv: (copy) => [copy.columns.map(csvField).join(","), ...copy.rows.map((row) => copy.columns.map((c) => csvField(row[c])).join(","))].join("\n"),
    json: (copy) => JSON.stringify(copy.rows, null, 2),
    insert: (copy) => copy.statement || "",
  };

  for (const button of copyButtons) {
    button.addEventListener("click", async () => {
      const keys = selected().map((row) => JSON.parse(row.dataset.key));
      if (keys.length === 0) return;
      say(`Copying ${keys.length} ${keys.length === 1 ? "row" : "rows"}…`);
      try {
        const copy = await getJson(`${api}/copy?keys=${encodeURIComponent(JSON.stringify(keys))}`);
        // The grid's order (key first), not jsonb's, which sorts keys by length.
        copy.columns = Array.from(rows[0].cells).slice(1).map((th) => th.dataset.column);
        await toClipboard(FORMATS[button.dataset.copy](copy));
        const missing = copy.missing ? ` ${field(copy.missing.length ?? copy.missing)} no longer found.` : "";
        say(`Copied ${copy.count} ${copy.count === 1 ? "row" : "rows"} as ${button.dataset.copy.toUpperCase()}.${missing}`);
      } catch (e) {
        say(`Could not copy: ${e.message}`);
      }
    });
  }

  // The clipboard API when the page may use it; else a selected text area, which is
  // also where the copied text stays for a second paste.
  async function toClipboard(text) {
    let buffer = document.getElementById("copy-buffer");
    if (!buffer) {
      buffer = document.createElement("textarea");
      buffer.id = "copy-buffer";
      buffer.className = "visually-hidden";
      buffer.readOnly = true;
      buffer.tabIndex = -1;
      buffer.setAttribute("aria-hidden", "true");
      document.body.append(buffer);
    }
    buffer.value = text;
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      const back = document.activeElement;
      buffer.select();
      document.execCommand("copy");
      if (back) back.focus();
    }
  }

  /* ---------- One cell: copy it, show it in full, open its JSON ---------- */

  function columnOf(cell) {
    return rows[0].cells[cell.cellIndex].dataset.column;
  }

  async function fullValue(cell) {
    const key = cell.parentElement.dataset.key;
    const answer = await getJson(`${api}/cell?column=${encodeURIComponent(columnOf(cell))}&key=${encodeURIComponent(key)}`);
    if (!answer.found) throw new Error("The row is gone, or you may no longer read it.");
    return answer;
  }

  function cellText(cell) {
    if (cell.querySelector(".null")) return "NULL";
    const json = cell.querySelector("button.open-json");
    if (json) return json.dataset.json;
    const time = cell.querySelector("time");
    if (time) return time.getAttribute("datetime");
    const value = cell.querySelector(".v, a.fk");
    return value ? value.textContent : "";
  }

  async function copyCell(cell) {
    if (!cell || cell.tagName !== "TD") return;
    try {
      const text = cell.dataset.cut ? field((await fullValue(cell)).value) : cellText(cell);
      await toClipboard(text);
      say(`Copied ${columnOf(cell)}.`);
    } catch (e) {
      say(`Could not copy: ${e.message}`);
    }
  }

  let panelFrom = null;
  function openPanel(cell, title, meta, text) {
    panelFrom = cell;
    document.getElementById("cell-panel-title").textContent = title;
    document.getElementById("cell-panel-meta").textContent = meta;
    document.getElementById("cell-panel-value").textContent = text;
    panel.hidden = false;
    document.getElementById("cell-panel-value").focus();
  }
  function closePanel() {
    if (panel.hidden) return false;
    panel.hidden = true;
    if (panelFrom) focusCell(rows.indexOf(panelFrom.parentElement), panelFrom.cellIndex);
    return true;
  }
  document.getElementById("cell-panel-close").addEventListener("click", closePanel);
  panel.addEventListener("keydown", (event) => { if (event.key === "Escape") { closePanel(); event.preventDefault(); } });
  document.getElementById("cell-panel-copy").addEventListener("click", async () => {
    await toClipboard(document.getElementById("cell-panel-value").textContent);
    say("Copied the value.");
  });

  const typeOf = (cell) => rows[0].cells[cell.cellIndex].querySelector(".col-type").textContent;
  const pretty = (value) => (typeof value === "string" ? value : JSON.stringify(value, null, 2));
  // "row 7" after the type, for a row with a key.
  const rowWords = (cell) => (cell.parentElement.dataset.label ? ` · row ${cell.parentElement.dataset.label}` : "");

  grid.addEventListener("click", async (event) => {
    const json = event.target.closest("button.open-json");
    const showAll = event.target.closest("button.show-all");
    const cell = event.target.closest("td");
    if (json) {
      openPanel(cell, columnOf(cell), `${typeOf(cell)}${rowWords(cell)}`, JSON.stringify(JSON.parse(json.dataset.json), null, 2));
    } else if (showAll) {
      say(`Loading ${columnOf(cell)} in full…`);
      try {
        const answer = await fullValue(cell);
        const kind = rows[0].cells[cell.cellIndex].dataset.kind;
        let value = answer.value;
        if (kind === "json" && typeof value === "string") { try { value = JSON.parse(value); } catch { /* shown as text */ } }
        const length = answer.length === null ? "" : ` · ${answer.length.toLocaleString("en-US")} characters`;
        openPanel(cell, columnOf(cell), `${answer.type}${rowWords(cell)}${length}`, pretty(value));
        say(`${columnOf(cell)} shown in full.`);
      } catch (e) {
        say(`Could not load the value: ${e.message}`);
      }
    }
  });

  /* ---------- Times: UTC or local, remembered ---------- */

  const zoneButton = document.getElementById("time-zone");
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  function formatTime(iso, local) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    const fraction = (iso.match(/:\d\d(\.\d+)/) || [, ""])[1];
    if (!local) {
      return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}${fraction} UTC`;
    }
    const offset = -d.getTimezoneOffset();
    const sign = offset >= 0 ? "+" : "-";
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}${fraction} ${sign}${pad(Math.floor(Math.abs(offset) / 60))}:${pad(Math.abs(offset) % 60)}`;
  }
  function showTimes(local) {
    for (const time of grid.querySelectorAll("time[datetime]")) time.textContent = formatTime(time.getAttribute("datetime"), local);
    zoneButton.setAttribute("aria-pressed", String(local));
    zoneButton.textContent = local ? "Times in local time" : "Times in UTC";
  }
  let local = localStorage.getItem("fluxbase.times") === "local";
  showTimes(local);
  zoneButton.addEventListener("click", () => {
    local = !local;
    localStorage.setItem("fluxbase.times", local ? "local" : "utc");
    showTimes(local);
    say(local ? "Times are shown in local time." : "Times are shown in UTC.");
  });
}
