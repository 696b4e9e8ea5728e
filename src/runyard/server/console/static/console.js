// Runyard console: confirmations, uPlot charts from JSON data blocks, a task followed live.
// No inline script anywhere (the CSP allows scripts from /ui/static only).
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});

function formatTick(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1000) return v.toLocaleString();
  if (a >= 1) return String(+v.toFixed(2));
  return v.toPrecision(2);
}

function drawCharts() {
  if (typeof uPlot === "undefined") return;
  const colors = ["#3b6fe0", "#c0392b", "#27ae60", "#e67e22"];
  document.querySelectorAll(".uplot-host").forEach((host) => {
    const data = JSON.parse(document.getElementById(host.dataset.series).textContent);
    const fields = host.dataset.fields.split(",");
    const opts = {
      width: Math.max(320, host.clientWidth || 560),
      height: 200,
      series: [{}].concat(fields.map((f, i) => ({ label: f, stroke: colors[i % colors.length], width: 2, fill: i === 0 ? "rgba(59,111,224,0.08)" : undefined }))),
      axes: [{}, { size: 84, values: (u, ticks) => ticks.map(formatTick) }],
      scales: { x: { time: true } },
    };
    host.textContent = "";
    new uPlot(opts, [data.t].concat(fields.map((f) => data[f])), host);
  });
}

function followTask() {
  const live = document.getElementById("task-live");
  if (!live || live.dataset.terminal === "true") return;
  const status = document.getElementById("task-status");
  const bar = document.getElementById("task-progress");
  const barText = document.getElementById("task-progress-text");
  const logs = document.getElementById("task-logs");
  const source = new EventSource("/ui/tasks/" + encodeURIComponent(live.dataset.task) + "/events");
  let fresh = true;  // the stream replays the task's events from its start: the log is rebuilt from it
  source.onmessage = (message) => {
    if (fresh) { logs.textContent = ""; fresh = false; }
    if (message.data === "[DONE]") { source.close(); window.location.reload(); return; }
    const event = JSON.parse(message.data);
    if (event.type === "progress" && typeof event.progress === "number") {
      bar.value = event.progress;
      barText.textContent = Math.round(event.progress * 100) + "%";
    } else if (event.type === "log") {
      const item = document.createElement("li");
      item.textContent = event.message;  // text, never markup
      logs.appendChild(item);
    } else if (event.type === "status" && event.status) {
      status.textContent = event.status;
      status.className = "pill " + event.status;
    }
  };
  source.onerror = () => { source.close(); };
}

document.addEventListener("DOMContentLoaded", () => { drawCharts(); followTask(); });
