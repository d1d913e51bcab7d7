// The live dashboard: one event stream of the gateway (GET /api/v1/sales/{id}/live) pushes a
// snapshot of the sale every second; rates are the difference of two snapshots.
"use strict";

const $ = (id) => document.getElementById(id);
const HISTORY = 90; // seconds of rate history in the chart
const COLOURS = { accepted: "#1a7f4b", sold_out: "#d7263d", already_purchased: "#b26a00", rate_limited: "#6b7385" };

let stream = null;
let previous = null;
let rateHistory = [];

function perSecond(now, before, seconds) {
  return seconds > 0 ? Math.max(0, (now - before) / seconds) : 0;
}

function cell(text, numeric) {
  const td = document.createElement("td");
  td.textContent = text;
  if (numeric) td.className = "num";
  return td;
}

function row(...cells) {
  const tr = document.createElement("tr");
  tr.append(...cells);
  return tr;
}

function draw(snapshot) {
  const sale = snapshot.sale;
  $("remaining").textContent = sale.remaining;
  $("stock").textContent = sale.stock;
  $("sale-state").textContent = SALE_STATES[sale.state] || sale.state;
  $("taken-bar").style.width = `${(100 * (sale.stock - sale.remaining)) / sale.stock}%`;

  const orders = snapshot.orders;
  for (const key of ["sold", "created", "paid", "expired", "failed"]) {
    $(`count-${key}`).textContent = orders[key];
  }
  $("revenue").textContent = money(orders.paid_revenue_cents);

  const seconds = previous ? (Date.parse(snapshot.at) - Date.parse(previous.at)) / 1000 : 0;
  const rates = {};
  const outcomes = Object.keys(snapshot.purchases).sort();
  $("purchases").replaceChildren(...outcomes.map((outcome) => {
    const total = snapshot.purchases[outcome];
    const before = previous ? previous.purchases[outcome] || 0 : total;
    rates[outcome] = perSecond(total, before, seconds);
    const name = cell(outcome);
    name.style.color = COLOURS[outcome] || "";
    return row(name, cell(rates[outcome].toFixed(0), true), cell(total, true));
  }));
  rateHistory.push(rates);
  if (rateHistory.length > HISTORY) rateHistory.shift();
  chart();

  const lagBefore = new Map((previous ? previous.consumers : []).map((c) => [c.group, c.lag]));
  $("lags").replaceChildren(...snapshot.consumers.map((consumer) => {
    const before = lagBefore.get(consumer.group);
    const drained = consumer.lag !== undefined && before !== undefined ? perSecond(before, consumer.lag, seconds) : null;
    if (consumer.group === snapshot.sms_group) {
      $("sms-backlog").textContent = consumer.lag ?? "?";
      $("sms-rate").textContent = drained === null ? "–" : drained.toFixed(0);
    }
    return row(cell(consumer.group), cell(consumer.lag ?? "unknown", true),
      cell(drained === null ? "–" : drained.toFixed(0), true));
  }));
  previous = snapshot;
}

/** Accepted and refused purchases per second, the last HISTORY seconds. */
function chart() {
  const canvas = $("rate-chart");
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  const outcomes = [...new Set(rateHistory.flatMap((rates) => Object.keys(rates)))];
  const top = Math.max(1, ...rateHistory.flatMap((rates) => Object.values(rates)));
  // The newest second at the right edge.
  const step = canvas.width / (HISTORY - 1);
  const left = canvas.width - (rateHistory.length - 1) * step;
  for (const outcome of outcomes) {
    context.strokeStyle = COLOURS[outcome] || "#1d2330";
    context.lineWidth = 2;
    context.beginPath();
      rateHistory.forEach((rates, i) => {
      const y = canvas.height - 4 - ((rates[outcome] || 0) / top) * (canvas.height - 8);
      if (i === 0) context.moveTo(left + i * step, y); else context.lineTo(left + i * step, y);
    });
    context.stroke();
  }
}

function watch(saleId) {
  if (stream) stream.close();
  previous = null;
  rateHistory = [];
  const url = new URL(location.href);
  url.searchParams.set("sale", saleId);
  window.history.replaceState(null, "", url);
  stream = new EventSource(`/api/v1/sales/${encodeURIComponent(saleId)}/live`);
  stream.addEventListener("snapshot", (event) => draw(JSON.parse(event.data)));
  stream.onopen = () => { $("connection").textContent = "live"; };
  stream.onerror = () => { $("connection").textContent = "reconnecting…"; };
}

/** Waits for the sale to exist: the page may open before it (as in the demo). */
async function start() {
  const sales = await listSales();
  const wanted = new URLSearchParams(location.search).get("sale");
  const picked = fillSalePicker($("sale"), sales, wanted);
  if (!picked || (wanted && picked !== wanted)) {
    $("connection").textContent = wanted ? `waiting for sale ${wanted}…` : "no sale is on yet";
    setTimeout(start, 1000);
    return;
  }
  $("sale").addEventListener("change", () => watch($("sale").value));
  watch(picked);
}

start();
