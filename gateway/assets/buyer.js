// The buyer's page: sign in, pick the sale, buy, and watch the order's result arrive.
//
// A purchase answers 202 "processing" at once; the rest of the order's life happens behind
// the queue, and the gateway pushes each change on the order's event stream
// (GET /api/v1/orders/{id}/events), which the browser's EventSource follows, resuming by
// itself with Last-Event-ID after a dropped connection. EventSource cannot set headers, so the
// stream's URL carries a stream token (POST /api/v1/orders/{id}/stream-token): it opens this
// one stream for a minute, and a URL that leaks (a proxy's log) gives away nothing more.
"use strict";

const $ = (id) => document.getElementById(id);

const page = {
  token: sessionStorage.getItem("seckill.token"),
  user: sessionStorage.getItem("seckill.user"),
  sale: null,
  order: null,
  /** The order stream being followed: {orderId, stream}. */
  following: null,
};

/** What each status, and each refusal of a purchase, means to a buyer. */
const WORDS = {
  processing: ["订单处理中 / processing", "Your unit is locked. The order is being created…"],
  created: ["Reserved — please pay", "The unit is yours once you pay."],
  paid: ["Paid ✓", "The unit is yours. A receipt is on its way by SMS."],
  expired: ["Expired", "The order was not paid in time; its unit went back on sale."],
  failed: ["Failed", "The order could not be created, so nothing was charged; its unit went back on sale."],
  sold_out: ["Sold out", "Every unit is taken. Units of unpaid orders come back on sale: try again in a while."],
  already_purchased: ["You already hold an order in this sale", "One per buyer: here is the order you hold."],
  rate_limited: ["Too many attempts", "Wait a moment and try again."],
  sale_not_open: ["The sale is not open", "Wait for the countdown."],
  blacklisted: ["This account may not buy", "Ask the shop why."],
  unauthenticated: ["Please sign in again", "Your sign-in is missing or has expired."],
  unavailable: ["Busy — nothing was bought", "The shop is overloaded for a moment; try again."],
};
const FINAL = new Set(["paid", "expired", "failed"]);

/** Adds a line to the order's timeline, once per status: what the buyer saw, and when. */
function remember(status) {
  const timeline = $("timeline");
  if ([...timeline.children].some((item) => item.dataset.status === status)) return;
  const item = document.createElement("li");
  item.dataset.status = status;
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString();
  item.append(time, (WORDS[status] || [status])[0]);
  timeline.append(item);
}

function show(status, detail) {
  const [title, explanation] = WORDS[status] || ["Something went wrong", ""];
  remember(status);
  $("order-panel").hidden = false;
  $("status").dataset.status = status;
  $("status").textContent = title;
  $("detail").textContent = detail || explanation;
}

function showOrder(order) {
  page.order = order;
  show(order.status);
  $("order-id").textContent = `order ${order.order_id}`;
  const payable = order.status === "processing" || order.status === "created";
  $("pay").hidden = !payable;
  $("pay").disabled = !payable;
  if (FINAL.has(order.status)) stopFollowing();
  render();
}

/** Follows the order's event stream until a final status. */
async function follow(orderId) {
  stopFollowing();
  const following = { orderId, stream: null };
  page.following = following;
  const { status, body } = await api("POST", `/api/v1/orders/${encodeURIComponent(orderId)}/stream-token`, { token: page.token });
  if (page.following !== following) return;
  // Signed out, or not this user's order: nothing to follow. Anything else passes.
  if (status === 401 || status === 404) return;
  if (status !== 200) {
    followAgainLater(following);
    return;
  }
  const url = `/api/v1/orders/${encodeURIComponent(orderId)}/events?access_token=${encodeURIComponent(body.token)}`;
  following.stream = new EventSource(url);
  following.stream.addEventListener("status", (event) => showOrder(JSON.parse(event.data)));
  // EventSource reconnects by itself after a dropped connection; it gives up on a refusal (its
  // token expired, the gateway's streams are full), and then the page asks for a new token.
  following.stream.addEventListener("error", () => {
    if (following.stream.readyState === EventSource.CLOSED) followAgainLater(following);
  });
}

function followAgainLater(following) {
  setTimeout(() => {
    const stillWanted = page.following === following && page.order && !FINAL.has(page.order.status);
    if (stillWanted) follow(following.orderId);
  }, 2000);
}

function stopFollowing() {
  if (page.following && page.following.stream) page.following.stream.close();
  page.following = null;
}

async function signIn(event) {
  event.preventDefault();
  const user = $("user").value.trim();
  const { status, body } = await api("POST", "/api/v1/demo/sign-in", { body: { user_id: user } });
  if (status === 404) {
    $("signed-in-as").textContent = "this gateway does not run in demo mode (--demo)";
    return;
  }
  if (status !== 200) {
    $("signed-in-as").textContent = body ? body.message : `sign-in failed (${status})`;
    return;
  }
  page.token = body.token;
  page.user = user;
  sessionStorage.setItem("seckill.token", page.token);
  sessionStorage.setItem("seckill.user", user);
  signedIn();
}

function signedIn() {
  $("signed-in-as").textContent = page.user ? `signed in as ${page.user}` : "";
  $("order-panel").hidden = true;
  $("timeline").replaceChildren();
  page.order = null;
  stopFollowing();
  findMyOrder();
  render();
}

/** After a reload, or for a buyer who already bought: the order held in this sale. */
async function findMyOrder() {
  if (!page.token || !page.sale) return;
  const { status, body } = await api("GET", `/api/v1/sales/${page.sale.id}/orders/mine`, { token: page.token });
  if (status === 200) {
    showOrder(body);
    if (!FINAL.has(body.status)) follow(body.order_id);
  }
}

async function buy() {
  $("buy").disabled = true;
  const { status, body, headers } = await api("POST", `/api/v1/sales/${page.sale.id}/orders`, { token: page.token });
  if (status === 202) {
    showOrder({ order_id: body.order_id, status: "processing" });
    follow(body.order_id);
  } else if (body && body.error === "already_purchased") {
    show("already_purchased");
    follow(body.order_id);
  } else if (body && body.error === "rate_limited") {
    show("rate_limited", `Wait ${headers.get("Retry-After") || "a few"} s and try again.`);
  } else {
    show(body ? body.error : "unavailable");
  }
  await refreshSale();
}

async function pay() {
  $("pay").disabled = true;
  const { status, body } = await api("POST", `/api/v1/orders/${page.order.order_id}/payment`, { token: page.token });
  if (status === 200) {
    showOrder({ ...page.order, status: "paid" });
  } else if (body && body.error === "order_expired") {
    showOrder({ ...page.order, status: "expired" });
  } else if (body && body.error === "order_failed") {
    showOrder({ ...page.order, status: "failed" });
  } else {
    $("detail").textContent = body ? body.message : `payment failed (${status})`;
    $("pay").disabled = false;
  }
}

/** Redraws the sale and the countdowns (four times a second). */
function render() {
  const sale = page.sale;
  $("sale-info").hidden = !sale;
  if (!sale) return;
  const now = Date.now();
  const starts = Date.parse(sale.starts_at);
  const ends = Date.parse(sale.ends_at);
  let state = sale.state;
  if (state === "upcoming" && now >= starts) state = "open";
  $("sale-name").textContent = sale.name;
  $("sale-price").textContent = money(sale.price_cents);
  $("sale-state").textContent = SALE_STATES[state] || state;
  $("countdown").textContent = state === "upcoming"
    ? `starts in ${clock((starts - now) / 1000)}`
    : state === "ended" ? "ended" : `ends in ${clock((ends - now) / 1000)}`;
  $("remaining").textContent = `${sale.remaining} of ${sale.stock} left`;
  const holding = page.order !== null;
  $("buy").disabled = !page.token || state !== "open" || holding;
  $("buy").textContent = page.token ? "Buy now" : "Sign in to buy";
  const payBy = page.order && page.order.pay_by && !FINAL.has(page.order.status)
    ? Date.parse(page.order.pay_by) : null;
  $("pay-countdown").textContent = payBy ? `time left to pay: ${clock((payBy - now) / 1000)}` : "";
}

async function refreshSale() {
  const id = $("sale").value;
  if (!id) return;
  const { status, body } = await api("GET", `/api/v1/sales/${encodeURIComponent(id)}`);
  if (status === 200) page.sale = body;
  render();
}

async function start() {
  const sales = await listSales();
  $("no-sales").hidden = sales.length > 0;
  const wanted = new URLSearchParams(location.search).get("sale");
  const picked = fillSalePicker($("sale"), sales, wanted);
  page.sale = sales.find((sale) => sale.id === picked) || null;
  if (page.user) $("user").value = page.user;
  $("sign-in-form").addEventListener("submit", signIn);
  $("buy").addEventListener("click", buy);
  $("pay").addEventListener("click", pay);
  $("sale").addEventListener("change", async () => {
    await refreshSale();
    signedIn();
  });
  signedIn();
  setInterval(render, 250);
  setInterval(refreshSale, 2000);
}

start();
