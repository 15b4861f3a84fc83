// Progressive enhancement of the console's pages: rebuild progress and the live tail.
// Every page works without it but these two; values are set as text, never as markup.
"use strict";

function followProgress(bar) {
  const row = bar.closest("tr");
  const percent = row.querySelector(".percent");
  const state = row.querySelector(".rebuild-state");
  const poll = () => {
    fetch(bar.dataset.progressUrl, { credentials: "same-origin" })
      .then((response) => response.json())
      .then((progress) => {
        bar.value = progress.percent;
        percent.textContent = progress.percent + "%";
        state.textContent = progress.error ? "failed: " + progress.error : progress.done ? "done" : "running";
        if (!progress.done) setTimeout(poll, 200);
      })
      .catch(() => setTimeout(poll, 1000));
  };
  poll();
}

function cell(text, href) {
  const td = document.createElement("td");
  if (href) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    td.appendChild(a);
  } else {
    td.textContent = text;
  }
  return td;
}

function followTail(table) {
  const base = table.dataset.base;
  const body = table.querySelector("tbody");
  const status = document.getElementById("tail-status");
  const source = new EventSource(table.dataset.streamUrl);
  source.onopen = () => { status.textContent = "live"; };
  source.onerror = () => { status.textContent = "reconnecting…"; };
  source.addEventListener("tidings", (message) => {
    const e = JSON.parse(message.data);
    const tr = document.createElement("tr");
    tr.dataset.position = e.position;
    tr.append(
      cell("#" + e.position, base + "/events/" + e.position),
      cell(e.stream, base + "/streams/" + encodeURIComponent(e.stream)),
      cell(String(e.version)),
      cell(e.type),
      cell(e.occurred_at),
      cell(e.summary),
    );
    body.prepend(tr);
    while (body.rows.length > 500) body.deleteRow(-1);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("progress[data-progress-url]").forEach(followProgress);
  const tail = document.getElementById("tail");
  if (tail) followTail(tail);
});
