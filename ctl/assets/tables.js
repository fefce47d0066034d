// The Tables list: filters the rows as you type (the form still works without it, as a
// GET ?q=). Display only: the server's filter is the same substring match on schema.name.
const input = document.getElementById("q");
const status = document.getElementById("status");
const sections = Array.from(document.querySelectorAll("section.schema"));

function apply() {
  const q = input.value.trim().toLowerCase();
  let shown = 0;
  for (const section of sections) {
    const table = section.querySelector("table[data-schema]");
    const schema = table ? table.dataset.schema : "";
    let visible = 0;
    for (const row of section.querySelectorAll("tbody tr[data-name]")) {
      const match = q === "" || `${schema}.${row.dataset.name}`.toLowerCase().includes(q);
      row.hidden = !match;
      if (match) visible += 1;
    }
    section.hidden = visible === 0;
    shown += visible;
  }
  if (status) {
    status.textContent = q === "" ? "" : `${shown} ${shown === 1 ? "relation matches" : "relations match"} “${input.value.trim()}”.`;
  }
  const url = new URL(window.location.href);
  if (q === "") url.searchParams.delete("q"); else url.searchParams.set("q", input.value.trim());
  window.history.replaceState(null, "", url);
}

if (input && sections.length > 0) {
  input.addEventListener("input", apply);
}
