/*
 * The index page of a viewer site: filter the slides table by the words typed in #filter (every word must appear in
 * a row), sort it by a column when its header is clicked (numbers by their data-value, others as text).
 */
(function () {
  "use strict";

  const table = document.getElementById("slides");
  const body = table.tBodies[0];
  const filter = document.getElementById("filter");
  const count = document.getElementById("count");
  const headers = Array.from(table.tHead.rows[0].cells);

  function applyFilter() {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const row of body.rows) {
      const text = row.textContent.toLowerCase() + " " + row.dataset.slideId.toLowerCase();
      row.hidden = !words.every((word) => text.includes(word));
      shown += row.hidden ? 0 : 1;
    }
    count.textContent = `${shown} of ${body.rows.length} slides`;
  }

  function key(row, column) {
    const cell = row.cells[column];
    if (cell.dataset.value !== undefined) {
      return [0, parseFloat(cell.dataset.value), ""];
    }
    const text = cell.textContent.trim().toLowerCase();
    return text === "" ? [2, 0, ""] : [1, 0, text];
  }

  function compare(a, b) {
    if (a[0] !== b[0]) {
      return a[0] - b[0];
    }
    return a[0] === 0 ? a[1] - b[1] : a[2].localeCompare(b[2], undefined, { numeric: true });
  }

  function sortBy(column) {
    const header = headers[column];
    const ascending = header.dataset.order !== "ascending";
    headers.forEach((other) => delete other.dataset.order);
    header.dataset.order = ascending ? "ascending" : "descending";
    const rows = Array.from(body.rows);
    rows.sort((a, b) => {
      const x = key(a, column);
      const y = key(b, column);
      return x[0] === 2 || y[0] === 2 ? x[0] - y[0] : (ascending ? 1 : -1) * compare(x, y);
    });
    rows.forEach((row) => body.appendChild(row));
  }

  filter.addEventListener("input", applyFilter);
  headers.forEach((header, column) => header.addEventListener("click", () => sortBy(column)));
  applyFilter();
})();
