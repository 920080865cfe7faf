// The index's filter: narrows the rows as you type (the form's ?q= does the same without JavaScript),
// and a reload every 10 s keeps the list current while the filter is not being typed in.
"use strict";
(function () {
  const input = document.getElementById("filter");
  const table = document.getElementById("deployments");
  if (!input || !table) return;
  function apply() {
    const needle = input.value.trim().toLowerCase();
    for (const row of table.tBodies[0].rows) {
      row.classList.toggle("hidden", needle !== "" && !row.dataset.key.includes(needle));
    }
    const url = new URL(window.location.href);
    if (needle) url.searchParams.set("q", input.value.trim()); else url.searchParams.delete("q");
    window.history.replaceState(null, "", url);
  }
  input.addEventListener("input", apply);
  window.setInterval(function () {
    if (document.activeElement !== input) window.location.reload();
  }, 10000);
})();
