// What both pages share: the API's JSON calls and how a sale is shown. No framework, no
// build step: this file is served as it is from the gateway binary.
"use strict";

/** Calls the API; resolves to {status, body} whatever the status (the body is the JSON). */
async function api(method, path, { token, body } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  return { status: response.status, body: json, headers: response.headers };
}

/** The sales a page can show, soonest first. */
async function listSales() {
  const { status, body } = await api("GET", "/api/v1/sales");
  return status === 200 ? body.sales : [];
}

/** Fills a <select> with the sales and picks `wanted` (or the first open one). */
function fillSalePicker(select, sales, wanted) {
  select.replaceChildren(...sales.map((sale) => {
    const option = document.createElement("option");
    option.value = sale.id;
    option.textContent = `${sale.name} (${sale.id})`;
    return option;
  }));
  const open = sales.find((sale) => sale.state === "open");
  const pick = sales.find((sale) => sale.id === wanted) || open || sales[0];
  if (pick) select.value = pick.id;
  return pick ? pick.id : null;
}

function money(cents) {
  return (cents / 100).toFixed(2);
}

/** "1:05:09" or "4:07" for a number of seconds. */
function clock(totalSeconds) {
  const s = Math.max(0, Math.floor(totalSeconds));
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const seconds = String(s % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${seconds}` : `${minutes}:${seconds}`;
}

const SALE_STATES = {
  upcoming: "not open yet",
  open: "open",
  sold_out: "sold out",
  ended: "over",
};
