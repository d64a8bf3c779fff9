// The l402 proxy dashboard: reads the admin API's JSON endpoints and draws them. Every string from the proxy
// is put into the page with textContent, never as HTML.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    if (c instanceof Node) {
      const td = document.createElement("td");
      td.appendChild(c);
      tr.appendChild(td);
    } else {
      tr.appendChild(el("td", c));
    }
  }
  return tr;
}

function sat(msat) {
  return (msat / 1000).toLocaleString(undefined, { maximumFractionDigits: 3 });
}

// A token id shortened for a table cell: its first and last 8 hex digits (the whole id is the cell's title).
function shortId(id) {
  return id.length > 20 ? id.slice(0, 8) + "…" + id.slice(-8) : id;
}

function when(secs) {
  return secs ? new Date(secs * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "";
}

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  if (r.status === 401) {
    window.location.assign("/login");
    throw new Error("logged out");
  }
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (!r.ok) {
    const why = json && json.error ? json.error : text;
    throw new Error(r.status + ": " + why);
  }
  return json;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function drawChart(series) {
  const box = document.getElementById("chart");
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const W = 600, H = 180, pad = 24;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  const pts = series.points;
  const max = Math.max(1, ...pts.map((p) => p.amount_msat));
  const n = Math.max(pts.length, 1);
  const bw = (W - 2 * pad) / n;
  pts.forEach((p, i) => {
    const h = (H - 2 * pad) * (p.amount_msat / max);
    const r = document.createElementNS(ns, "rect");
    const w = Math.min(Math.max(bw - 2, 1), 48);
    r.setAttribute("x", String(pad + i * bw + (bw - w) / 2));
    r.setAttribute("y", String(H - pad - h));
    r.setAttribute("width", String(w));
    r.setAttribute("height", String(h));
    const t = document.createElementNS(ns, "title");
    t.textContent = `${when(p.start)}: ${sat(p.amount_msat)} sat, ${p.tokens_paid} tokens`;
    r.appendChild(t);
    svg.appendChild(r);
  });
  const label = (x, y, s, anchor) => {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", String(x));
    t.setAttribute("y", String(y));
    if (anchor) t.setAttribute("text-anchor", anchor);
    t.textContent = s;
    svg.appendChild(t);
  };
  label(pad, 12, `${sat(max)} sat`);
  if (pts.length) {
    label(pad, H - 6, when(pts[0].start));
    label(W - pad, H - 6, when(pts[pts.length - 1].start), "end");
  } else {
    label(W / 2, H / 2, "no payments yet", "middle");
  }
  box.replaceChildren(svg);
}

async function loadSummary() {
  const s = await api("GET", "/admin/summary");
  fill(document.querySelector("#by-service tbody"),
    s.services.map((x) => row([x.service, x.challenges, x.tokens_paid, sat(x.amount_msat)])));
  const dl = document.getElementById("node");
  const items = s.node.reachable
    ? [["Reachable", "yes"], ["Alias", s.node.alias], ["Public key", s.node.pubkey], ["Network", s.node.network],
       ["Block height", s.node.block_height]]
    : [["Reachable", "no"], ["Error", s.node.error]];
  // Channel liquidity, when the summary carries it (a backend that reports channel balances).
  if (s.node.channel_balance) {
    items.push(["Inbound (sat)", sat(s.node.channel_balance.inbound_msat)],
      ["Outbound (sat)", sat(s.node.channel_balance.outbound_msat)]);
  }
  dl.replaceChildren(...items.flatMap(([k, v]) => [el("dt", k), el("dd", v)]));
  dl.dataset.reachable = String(s.node.reachable);
  const st = s.since_start;
  const counters = [["Challenges issued", st.challenges_issued], ["Tokens verified", st.tokens_verified],
    ["Invoices settled", st.invoices_settled], ["Revenue (sat)", sat(st.revenue_msat)],
    ...Object.entries(st.refusals).map(([k, v]) => ["Refused: " + k, v])];
  document.getElementById("since-start").replaceChildren(...counters.flatMap(([k, v]) => [el("dt", k), el("dd", v)]));
}

async function loadRevenue() {
  const rev = await api("GET", "/admin/revenue");
  const total = rev.reduce((a, r) => a + r.amount_msat, 0);
  document.getElementById("revenue-total").textContent = sat(total);
  document.getElementById("revenue-tokens").textContent = String(rev.reduce((a, r) => a + r.tokens_paid, 0));
  const bucket = document.getElementById("bucket").value;
  drawChart(await api("GET", "/admin/revenue/series?bucket=" + encodeURIComponent(bucket)));
}

async function loadTokens() {
  const list = await api("GET", "/admin/tokens?limit=200");
  const msg = document.getElementById("tokens-message");
  fill(document.querySelector("#tokens tbody"), list.map((t) => {
    const state = t.revoked_at ? "revoked" : t.paid_at ? "paid" : "unpaid";
    let action = el("span", "");
    if (!t.revoked_at) {
      action = el("button", "Revoke", "revoke");
      action.type = "button";
      action.dataset.tokenId = t.token_id;
      action.addEventListener("click", async () => {
        action.disabled = true;
        try {
          await api("POST", "/admin/tokens/" + encodeURIComponent(t.token_id) + "/revoke");
          msg.textContent = "";
          await refresh();
        } catch (e) {
          msg.textContent = "Revoke failed: " + e.message;
          action.disabled = false;
        }
      });
    }
    const short = el("span", shortId(t.token_id), "id");
    short.title = t.token_id;
    const tr = row([short, t.service, sat(t.price_msat), when(t.created_at), state, action]);
    tr.dataset.tokenId = t.token_id;
    tr.dataset.state = state;
    return tr;
  }));
  const paid = list.filter((t) => t.paid_at).sort((a, b) => b.paid_at - a.paid_at).slice(0, 20);
  fill(document.querySelector("#payments tbody"), paid.map((t) => {
    const tr = row([when(t.paid_at), t.service, sat(t.price_msat), el("span", shortId(t.token_id), "id")]);
    tr.dataset.tokenId = t.token_id;
    return tr;
  }));
}

async function loadServices() {
  const list = await api("GET", "/admin/services");
  const msg = document.getElementById("services-message");
  fill(document.querySelector("#services tbody"), list.map((s) => {
    const price = s.price_msat !== undefined ? s.price_msat : (s.price_sat || 0) * 1000;
    const input = el("input", null, "price");
    input.type = "number";
    input.min = "0";
    input.step = "any";
    input.value = String(price / 1000);
    input.addEventListener("input", () => { input.dataset.dirty = "1"; });
    input.setAttribute("aria-label", "price of " + s.name + " in sat");
    const save = el("button", "Save", "save");
    save.type = "button";
    const redacted = Object.values(s.headers || {}).some((h) => h.value !== undefined);
    if (redacted) {
      save.disabled = true;
      save.title = "this service sends header values the API does not show: change it with PUT /admin/services";
    }
    save.addEventListener("click", async () => {
      const sats = Number(input.value);
      if (!Number.isFinite(sats) || sats < 0) {
        msg.textContent = "A price is a number of sat, 0 or more.";
        return;
      }
      const body = Object.assign({}, s);
      delete body.price_sat;
      body.price_msat = Math.round(sats * 1000);
      save.disabled = true;
      try {
        await api("PUT", "/admin/services/" + encodeURIComponent(s.name), body);
        msg.textContent = "";
        await refresh();
      } catch (e) {
        msg.textContent = "Saving " + s.name + " failed: " + e.message;
        save.disabled = false;
      }
    });
    const cell = document.createElement("span");
    cell.append(input);
    const tr = row([s.name, s.path, s.upstream, cell, save]);
    tr.dataset.service = s.name;
    return tr;
  }));
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    await Promise.all([loadSummary(), loadRevenue(), loadTokens(), loadServices()]);
    status.textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.loaded = String(Date.now());
  } catch (e) {
    status.textContent = "error: " + e.message;
  }
}

document.getElementById("refresh").addEventListener("click", refresh);
document.getElementById("bucket").addEventListener("change", refresh);
document.getElementById("logout").addEventListener("click", async () => {
  await fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" });
  window.location.assign("/login");
});
refresh();
// Every 5 s, unless a price is being edited.
setInterval(() => { if (!document.querySelector("input.price[data-dirty]")) refresh(); }, 5000);
