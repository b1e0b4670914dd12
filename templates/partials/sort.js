// Sortable tables: a click on a column's header sorts the rows by that column, ascending, and
// a second click reverses. Each row carries its cells' keys from Python (data-sort, JSON: a
// number, a text, or null for no value, kept last either way). Inline: the page stays one file.
document.querySelectorAll("table.sortable").forEach((table) => {
  const headers = Array.from(table.tHead.rows[0].cells);
  const body = table.tBodies[0];
  const key = (row, column) => JSON.parse(row.dataset.sort)[column] ?? null;
  const compare = (a, b) => {
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a).localeCompare(String(b), undefined, { numeric: true });
  };
  headers.forEach((header, column) => {
    const button = document.createElement("button");
    button.type = "button";
    button.title = "Sort by this column";
    button.append(...header.childNodes);
    header.append(button);
    button.addEventListener("click", () => {
      const ascending = header.getAttribute("aria-sort") !== "ascending";
      headers.forEach((other) => other.removeAttribute("aria-sort"));
      header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const rows = Array.from(body.rows).map((row, index) => ({ row, index, value: key(row, column) }));
      rows.sort((a, b) => {
        if (a.value === null || b.value === null) {
          return (a.value === null) - (b.value === null) || a.index - b.index;
        }
        return (ascending ? 1 : -1) * compare(a.value, b.value) || a.index - b.index;
      });
      rows.forEach(({ row }) => body.append(row));
    });
  });
});
