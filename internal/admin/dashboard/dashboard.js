// proxyd dashboard (docs/admin-api.md, "GET /dashboard"). Polls GET
// /api/v1/stats once a second while the tab is visible and turns cumulative
// counters into rates between snapshots, so the server keeps no state for
// it. Charts are plain canvas.
// No dependencies; nothing is fetched but this origin's /api/.
"use strict";

(function () {
  const PERIOD_MS = 1000;   // poll period
  const HISTORY_S = 60;     // chart span
  const RATE_S = 3;         // window of the displayed rates
  const QUANTILE_S = 10;    // window of the wait quantiles
  const TOKEN_KEY = "proxyd.admin.token";
  const PRIORITIES = [0, 1, 2, 3, 4, 5, 6, 7];
  const PRIO_COLORS = ["#b91c1c", "#ea580c", "#d97706", "#2563eb", "#0891b2", "#7c3aed", "#64748b", "#94a3b8"];
  const OUTCOME_COLORS = {
    forwarded: "#15803d", rejected: "#b91c1c", shed: "#ea580c", queue_timeout: "#d97706",
    canceled: "#64748b", denied: "#7c3aed", error: "#be123c", draining: "#0f172a",
  };

  const $ = (id) => document.getElementById(id);
  let history = [];          // {t (s, server time), s (snapshot)}, oldest first
  let timer = null;
  let inFlightPoll = false;
  let needToken = false;
  let pendingAction = null;  // retried after a token is entered
  let formDirty = false;

  // ---- token (docs/admin-api.md, "Authentication": /api/ needs it when
  // admin.token is set)

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  function api(method, path, body) {
    const headers = { "Accept": "application/json" };
    const tok = token();
    if (tok) headers["Authorization"] = "Bearer " + tok;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, {
      method, headers, cache: "no-store", credentials: "omit",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  function askToken(msg, retry) {
    needToken = true;
    pendingAction = retry || null;
    $("auth").hidden = false;
    $("auth-error").textContent = msg || "";
    setState("token needed", "warn");
    $("token").focus();
  }

  $("auth-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = $("token").value.trim();
    if (!v) return;
    sessionStorage.setItem(TOKEN_KEY, v);
    $("token").value = "";
    $("auth").hidden = true;
    $("token-forget").hidden = false;
    needToken = false;
    const act = pendingAction;
    pendingAction = null;
    if (act) act();
    schedule(0);
  });

  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("token-forget").hidden = true;
    schedule(0);
  });
  $("token-forget").hidden = !token();

  // ---- polling

  function schedule(ms) {
    clearTimeout(timer);
    timer = null;
    if (document.visibilityState === "hidden" || needToken) return; // nobody watches: no requests
    timer = setTimeout(poll, ms);
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") schedule(0);
    else { clearTimeout(timer); timer = null; }
  });

  async function poll() {
    if (inFlightPoll) return;
    inFlightPoll = true;
    const started = performance.now();
    try {
      const resp = await api("GET", "/api/v1/stats");
      if (resp.status === 401) {
        askToken(token() ? "That token was refused." : "", null);
        return;
      }
      if (!resp.ok) throw new Error("GET /api/v1/stats: " + resp.status);
      const s = await resp.json();
      push(s);
      render();
    } catch (e) {
      setState("no data: " + e.message, "bad");
    } finally {
      inFlightPoll = false;
      if (!needToken) schedule(Math.max(0, PERIOD_MS - (performance.now() - started)));
    }
  }

  function push(s) {
    const t = Date.parse(s.time) / 1000;
    const last = history[history.length - 1];
    if (last && t < last.t) history = []; // the server's clock went back: start over
    history.push({ t, s });
    while (history.length > 2 && history[0].t < t - HISTORY_S - 2) history.shift();
  }

  // ---- arithmetic on snapshots

  // back returns the newest snapshot at least secs older than the newest
  // one, else the oldest (or null when there is only one).
  function back(secs) {
    if (history.length < 2) return null;
    const now = history[history.length - 1].t;
    for (let i = history.length - 2; i >= 0; i--) {
      if (now - history[i].t >= secs) return history[i];
    }
    return history[0];
  }

  // rate is (f(new) - f(old)) per second, or null (no interval, or a
  // counter that went down: a restart or a dropped rule).
  function rate(cur, old, f) {
    if (!old || cur.t <= old.t) return null;
    const a = f(cur.s), b = f(old.s);
    if (a === undefined || b === undefined || a < b) return null;
    return (a - b) / (cur.t - old.t);
  }

  // quantile of a histogram delta (Prometheus histogram_quantile: linear
  // inside the bucket). Returns null without observations, Infinity when
  // it lies past the last bound.
  function quantile(q, bounds, cur, old) {
    const c = cur.buckets, o = old ? old.buckets : null;
    const count = cur.count - (old ? old.count : 0);
    if (!(count > 0)) return null;
    const rank = q * count;
    let prevCum = 0, prevBound = 0;
    for (let i = 0; i < bounds.length; i++) {
      const cum = c[i] - (o ? o[i] : 0);
      if (cum >= rank) {
        const inBucket = cum - prevCum;
        if (inBucket <= 0) return bounds[i];
        return prevBound + (bounds[i] - prevBound) * (rank - prevCum) / inBucket;
      }
      prevCum = cum;
      prevBound = bounds[i];
    }
    return Infinity;
  }

  const sum = (obj) => Object.values(obj || {}).reduce((a, b) => a + b, 0);

  // ---- formatting

  function fmtNum(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (digits === undefined) digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
    return v.toFixed(digits).replace(/\.0+$|(\.\d*?)0+$/, "$1");
  }
  function fmtLimit(v) { return v === 0 ? "unlimited" : String(v); }
  function fmtDur(sec) {
    if (sec === null || sec === undefined) return "–";
    if (sec === Infinity) return "> 60 s";
    if (sec < 0.001) return fmtNum(sec * 1e6, 0) + " µs";
    if (sec < 1) return fmtNum(sec * 1000) + " ms";
    if (sec < 120) return fmtNum(sec) + " s";
    return Math.floor(sec / 60) + " min " + Math.round(sec % 60) + " s";
  }

  function setState(text, cls) {
    const el = $("state");
    el.textContent = text;
    el.className = "pill " + (cls || "");
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // bar shows v against max; against a cap (cap true) a full bar turns
  // orange (the legends say so), against a mere maximum it does not.
  function bar(v, max, cap) {
    const b = el("div", "bar");
    const f = el("div");
    const frac = max > 0 ? Math.min(1, v / max) : 0;
    f.style.width = (frac * 100).toFixed(1) + "%";
    if (cap && max > 0 && v >= max) b.classList.add("full");
    b.appendChild(f);
    return b;
  }

  function row(cells) {
    const tr = el("tr");
    for (const c of cells) {
      const td = el("td", c.cls);
      if (c.node) td.appendChild(c.node); else td.textContent = c.text;
      if (c.title) td.title = c.title;
      tr.appendChild(td);
    }
    return tr;
  }

  // ---- charts (canvas, no library)

  // chart draws series [{values: [[t, v]...], color, dashed, fill}] over the
  // last HISTORY_S seconds; stacked adds them up (areas).
  function chart(canvas, series, stacked) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(w * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr); }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const now = history.length ? history[history.length - 1].t : 0;
    const t0 = now - HISTORY_S;
    const pad = { l: 34, r: 4, t: 6, b: 14 };
    let ymax = 0;
    let stack = null;
    if (stacked) {
      stack = [];
      for (const s of series) {
        const prev = stack.length ? stack[stack.length - 1] : null;
        stack.push(s.values.map(([t, v], i) => [t, (v || 0) + (prev ? prev[i][1] : 0)]));
      }
      for (const p of stack[stack.length - 1] || []) ymax = Math.max(ymax, p[1]);
    } else {
      for (const s of series) for (const [, v] of s.values) if (v !== null && v > ymax) ymax = v;
    }
    ymax = niceMax(ymax);
    const X = (t) => pad.l + (t - t0) / HISTORY_S * (w - pad.l - pad.r);
    const Y = (v) => h - pad.b - v / ymax * (h - pad.t - pad.b);
    // grid and labels
    ctx.strokeStyle = "#e5e7eb"; ctx.fillStyle = "#6b7280"; ctx.lineWidth = 1;
    ctx.font = "10px system-ui, sans-serif"; ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (const f of [0, 0.5, 1]) {
      const y = Math.round(Y(ymax * f)) + 0.5;
      ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(w - pad.r, y); ctx.stroke();
      ctx.fillText(fmtNum(ymax * f), pad.l - 4, y);
    }
    ctx.textAlign = "left"; ctx.textBaseline = "bottom";
    ctx.fillText("-" + HISTORY_S + " s", pad.l, h);
    ctx.textAlign = "right";
    ctx.fillText("now", w - pad.r, h);
    const drawn = stacked ? stack : series.map((s) => s.values);
    for (let k = drawn.length - 1; k >= 0; k--) {
      const s = series[k], pts = drawn[k].filter((p) => p[1] !== null && p[0] >= t0);
      if (!pts.length) continue;
      ctx.strokeStyle = s.color; ctx.lineWidth = s.dashed ? 1.5 : 1.8;
      ctx.setLineDash(s.dashed ? [5, 4] : []);
      ctx.beginPath();
      pts.forEach(([t, v], i) => (i ? ctx.lineTo(X(t), Y(v)) : ctx.moveTo(X(t), Y(v))));
      if (s.fill || stacked) {
        ctx.stroke();
        ctx.lineTo(X(pts[pts.length - 1][0]), Y(0));
        ctx.lineTo(X(pts[0][0]), Y(0));
        ctx.closePath();
        ctx.globalAlpha = stacked ? 0.85 : 0.15; ctx.fillStyle = s.color; ctx.fill(); ctx.globalAlpha = 1;
      } else {
        ctx.stroke();
      }
    }
    ctx.setLineDash([]);
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  // seriesOf maps each consecutive pair of snapshots to f's rate (rate
  // true) or each snapshot to f's value.
  function seriesOf(f, isRate) {
    const out = [];
    for (let i = 0; i < history.length; i++) {
      const h = history[i];
      out.push([h.t, isRate ? (i ? rate(h, history[i - 1], f) : null) : f(h.s)]);
    }
    return out;
  }

  // ---- rendering

  function render() {
    const cur = history[history.length - 1];
    const s = cur.s, q = s.queue, l = s.limits;
    document.body.dataset.snapshot = s.time;
    document.body.dataset.samples = String(history.length);
    setState(q.draining ? "draining" : "live", q.draining ? "warn" : "ok");
    $("updated").textContent = "updated " + new Date(cur.t * 1000).toLocaleTimeString();

    const rOld = back(RATE_S);
    const admitted = rate(cur, rOld, (x) => x.admitted_total);
    $("admitted-rate").textContent = fmtNum(admitted);
    $("rate-limit").textContent = fmtLimit(l.rate);
    $("burst-limit").textContent = String(l.burst);
    $("inflight").textContent = String(q.in_flight);
    $("concurrency-cap").textContent = fmtLimit(l.concurrency);
    $("depth").textContent = String(q.depth);
    $("queue-size").textContent = String(l.queue_size);
    $("oldest-wait").textContent = fmtDur(q.oldest_wait_seconds);
    $("max-wait").textContent = l.max_wait;
    $("tunnels-open").textContent = String(q.tunnels_open);
    $("max-tunnels").textContent = fmtLimit(s.max_tunnels);
    $("tunnels-waiting").textContent = String(q.waiting_tunnels);

    const answeredRate = rate(cur, rOld, (x) => sum(x.requests_total));
    $("answered-rate").textContent = fmtNum(answeredRate);

    // charts
    chart($("chart-admitted"), [
      { values: seriesOf((x) => x.admitted_total, true), color: "#2563eb", fill: true },
      { values: seriesOf((x) => (x.limits.rate > 0 ? x.limits.rate : null), false), color: "#b91c1c", dashed: true },
    ]);
    chart($("chart-inflight"), [
      { values: seriesOf((x) => x.queue.in_flight, false), color: "#0891b2", fill: true },
      { values: seriesOf((x) => (x.limits.concurrency > 0 ? x.limits.concurrency : null), false), color: "#b91c1c", dashed: true },
    ]);
    chart($("chart-depth"), PRIORITIES.map((p) => ({
      values: seriesOf((x) => x.queue.by_priority[String(p)] || 0, false), color: PRIO_COLORS[p],
    })), true);
    const outcomes = Object.keys(s.requests_total);
    chart($("chart-outcomes"), outcomes.map((o) => ({
      values: seriesOf((x) => x.requests_total[o], true), color: OUTCOME_COLORS[o] || "#111827",
    })));
    renderLegend(outcomes, cur, rOld);

    renderPriorities(cur, rOld);
    renderOutcomes(cur, rOld, outcomes);
    renderPaused(q.paused);
    renderProviders(s.provider_caps || [], q.paused, s.hosts);
    renderQuotas(cur);
    renderHosts(cur, rOld);
    renderStore(s.store);
    fillForm(l);
  }

  function renderLegend(outcomes, cur, old) {
    const box = $("outcome-legend");
    box.replaceChildren();
    for (const o of outcomes) {
      const r = rate(cur, old, (x) => x.requests_total[o]);
      if (!(r > 0)) continue;
      const item = el("span", "legend-item");
      const sw = el("span", "swatch");
      sw.style.background = OUTCOME_COLORS[o] || "#111827";
      item.append(sw, o + " " + fmtNum(r));
      box.appendChild(item);
    }
  }

  function renderPriorities(cur, rOld) {
    const s = cur.s, qOld = back(QUANTILE_S);
    $("window").textContent = qOld ? String(Math.round(cur.t - qOld.t)) : String(QUANTILE_S);
    const bounds = s.queue_wait.bounds;
    const maxDepth = Math.max(1, ...PRIORITIES.map((p) => s.queue.by_priority[String(p)] || 0));
    const body = $("prio-table").tBodies[0];
    const rows = PRIORITIES.map((p) => {
      const k = String(p);
      const n = s.queue.by_priority[k] || 0;
      const h = s.queue_wait.by_priority[k];
      const hOld = qOld ? qOld.s.queue_wait.by_priority[k] : null;
      const usable = hOld && h.count >= hOld.count ? hOld : null;
      const p50 = usable ? quantile(0.5, bounds, h, usable) : null;
      const p99 = usable ? quantile(0.99, bounds, h, usable) : null;
      const adm = rate(cur, rOld, (x) => x.queue_wait.by_priority[k].count);
      // The oldest wait of the requests waiting now: p50/p99 see a request
      // only once it leaves the queue, so they stay "–" for a priority
      // whose requests all wait or time out.
      const oldest = n > 0 ? (s.oldest_wait_seconds_by_priority || {})[k] : null;
      const sw = el("span", "swatch");
      sw.style.background = PRIO_COLORS[p];
      const label = el("span");
      label.append(sw, k);
      const tr = row([
        { node: label }, { text: String(n), cls: "waiting" }, { node: bar(n, maxDepth, false) },
        { text: fmtDur(oldest), cls: "oldest" }, { text: fmtDur(p50), cls: "p50" }, { text: fmtDur(p99), cls: "p99" }, { text: fmtNum(adm), cls: "rate" },
      ]);
      tr.dataset.priority = k;
      return tr;
    });
    body.replaceChildren(...rows);
  }

  function renderOutcomes(cur, rOld, outcomes) {
    const rows = outcomes.map((o) => {
      const sw = el("span", "swatch");
      sw.style.background = OUTCOME_COLORS[o] || "#111827";
      const label = el("span");
      label.append(sw, o);
      const tr = row([{ node: label }, { text: fmtNum(rate(cur, rOld, (x) => x.requests_total[o])), cls: "rate" },
        { text: String(cur.s.requests_total[o]), cls: "total" }]);
      tr.dataset.outcome = o;
      return tr;
    });
    $("outcome-table").tBodies[0].replaceChildren(...rows);
  }

  function renderPaused(paused) {
    $("paused-none").hidden = paused.length > 0;
    $("paused-table").hidden = paused.length === 0;
    const rows = paused.map((p) => {
      const tr = row([{ text: p.destination, cls: "match" }, { text: fmtDur(p.remaining_seconds), cls: "left", title: "until " + p.until }]);
      tr.dataset.destination = p.destination;
      return tr;
    });
    $("paused-table").tBodies[0].replaceChildren(...rows);
  }

  const MAX_PROVIDER_ROWS = 200; // soonest reset first; more are counted, not drawn

  const hasTokens = (qs) => (qs || []).some((q) => q.unit === "tokens");

  // renderProviders: what each destination's provider last said is left
  // (provider_caps, soonest reset first), with the time to its reset on
  // the server's clock, counting down with each snapshot. Both units are
  // enforced; a tokens cap holds only requests priced in tokens, those of
  // a rule with a tokens quota.
  function renderProviders(caps, paused, hosts) {
    $("providers-none").hidden = caps.length > 0;
    $("providers-table").hidden = caps.length === 0;
    $("providers-legend").hidden = caps.length === 0;
    const isPaused = new Set(paused.map((p) => p.destination));
    const priced = new Set(hosts.filter((h) => hasTokens(h.quotas)).map((h) => h.match));
    const shown = caps.slice(0, MAX_PROVIDER_ROWS);
    $("providers-shown").textContent = shown.length < caps.length ? ", " + shown.length + " of " + caps.length + " shown" : "";
    const rows = shown.map((c) => {
      let state = "", stateTitle = "";
      const unpriced = c.unit === "tokens" && !priced.has(c.rule);
      if (isPaused.has(c.destination)) state = "paused";
      else if (unpriced) { state = "not priced"; stateTitle = "the destination's hosts rule has no tokens quota: its requests are not priced in tokens, and this cap holds none of them"; }
      else if (c.remaining === 0) state = "waiting for reset";
      const tr = row([
        { text: c.destination, cls: "match", title: c.destination },
        { text: c.rule === null || c.rule === undefined ? "\u2013" : c.rule, cls: "rule" },
        { text: c.unit, cls: "unit" },
        { text: String(c.remaining), cls: "remaining", title: "stated " + c.stated + ", " + (c.stated - c.remaining) + (c.unit === "requests" ? " admitted since" : " in prices admitted since, corrected by their usage") },
        { text: c.limit === null || c.limit === undefined ? "\u2013" : String(c.limit), cls: "limit" },
        { text: fmtDur(c.reset_seconds), cls: "reset", title: "at " + c.reset },
        { text: state, cls: "state", title: stateTitle },
      ]);
      tr.dataset.destination = c.destination;
      tr.dataset.unit = c.unit;
      if (c.remaining === 0 && !unpriced) tr.classList.add("exhausted");
      return tr;
    });
    $("providers-table").tBodies[0].replaceChildren(...rows);
  }

  const MAX_QUOTA_ROWS = 500; // more are counted, not drawn

  // costRatio is a rule's mean actual/price: over the last QUANTILE_S
  // seconds when answers reported their usage in them, else since start;
  // null before any. recent says which.
  function costRatio(match, cur, old) {
    const r = cur.s.hosts.find((h) => h.match === match);
    const c = r && r.cost_ratio;
    if (!c || !(c.count > 0)) return null;
    const o = old && (old.s.hosts.find((h) => h.match === match) || {}).cost_ratio;
    if (o && c.count > o.count) return { v: (c.sum - o.sum) / (c.count - o.count), recent: true, c };
    return { v: c.sum / c.count, recent: false, c };
  }

  // renderQuotas: a budget bar per quota, the global ones (limits.quotas)
  // first, then each hosts rule's, with the debt (used above the limit)
  // and the rule's cost ratio on its tokens quotas.
  function renderQuotas(cur) {
    const s = cur.s, old = back(QUANTILE_S);
    const list = [];
    for (const q of s.quotas || []) list.push({ rule: null, q });
    for (const h of s.hosts) for (const q of h.quotas || []) list.push({ rule: h.match, q });
    $("quotas-none").hidden = list.length > 0;
    $("quotas-table").hidden = list.length === 0;
    $("quotas-legend").hidden = list.length === 0;
    const rows = list.slice(0, MAX_QUOTA_ROWS).map(({ rule, q }) => {
      const debt = q.debt || 0;
      const b = bar(q.used, q.limit, true);
      if (debt > 0) b.classList.add("debt");
      let state = "";
      if (debt > 0) state = "in debt";
      else if (q.used >= q.limit) state = "full";
      const ratio = q.unit === "tokens" && rule !== null ? costRatio(rule, cur, old) : null;
      const tr = row([
        { text: rule === null ? "(global)" : rule, cls: "rule", title: rule === null ? "limits.quotas" : rule },
        { text: q.unit, cls: "unit" }, { text: q.per, cls: "per" },
        { node: b },
        { text: String(q.used), cls: "used" }, { text: String(q.limit), cls: "limit" },
        { text: debt > 0 ? String(debt) : "\u2013", cls: "debt-units" },
        { text: ratio ? fmtNum(ratio.v) : "\u2013", cls: "ratio",
          title: ratio ? (ratio.recent ? "last " + QUANTILE_S + " s; " : "") + "since start " + fmtNum(ratio.c.sum / ratio.c.count) + " over " + ratio.c.count + " answers" : "" },
        { text: state, cls: "state" },
      ]);
      tr.dataset.rule = rule === null ? "" : rule;
      tr.dataset.unit = q.unit;
      tr.dataset.per = q.per;
      if (debt > 0) tr.classList.add("debt");
      else if (q.used >= q.limit) tr.classList.add("full");
      return tr;
    });
    $("quotas-table").tBodies[0].replaceChildren(...rows);
  }

  const MAX_HOST_ROWS = 500; // more are counted, not drawn

  // fmtQuotas: "1234/5000 per 1h" for each quota (used/limit), "–" for none.
  function fmtQuotas(qs) {
    if (!qs || qs.length === 0) return "\u2013";
    return qs.map((q) => q.used + "/" + q.limit + " per " + q.per + (q.unit === "requests" ? "" : " " + q.unit)).join(", ");
  }

  function renderHosts(cur, rOld) {
    const hosts = cur.s.hosts;
    $("hosts-count").textContent = String(hosts.length);
    $("hosts-none").hidden = hosts.length > 0;
    const filter = $("hosts-filter").value.trim().toLowerCase();
    const oldBy = new Map();
    if (rOld) for (const h of rOld.s.hosts) oldBy.set(h.match, h);
    let list = hosts.map((h, i) => {
      const o = oldBy.get(h.match);
      const r = o && cur.t > rOld.t && h.admitted_total >= o.admitted_total
        ? (h.admitted_total - o.admitted_total) / (cur.t - rOld.t) : null;
      return { h, i, r };
    });
    if (filter) list = list.filter((x) => x.h.match.toLowerCase().includes(filter));
    if ($("hosts-busy").checked) {
      const load = (x) => x.h.in_flight + x.h.waiting + (x.r || 0);
      list.sort((a, b) => load(b) - load(a) || a.i - b.i);
    }
    const shown = list.slice(0, MAX_HOST_ROWS);
    $("hosts-shown").textContent = list.length !== hosts.length || shown.length < list.length
      ? ", " + shown.length + " shown" : "";
    const rows = shown.map(({ h, r }) => {
      const tr = row([
        { text: h.match, cls: "match", title: h.match }, { text: String(h.in_flight), cls: "inflight" },
        { text: fmtLimit(h.concurrency), cls: "cap" }, { node: bar(h.in_flight, h.concurrency, true) },
        { text: String(h.waiting), cls: "waiting" }, { text: fmtNum(r), cls: "rate" },
        { text: fmtLimit(h.rate), cls: "limit" }, { text: String(h.burst), cls: "burst" },
        { text: fmtQuotas(h.quotas), cls: "quotas" },
      ]);
      tr.dataset.match = h.match;
      return tr;
    });
    $("hosts-table").tBodies[0].replaceChildren(...rows);
    $("hosts-table").hidden = hosts.length === 0;
  }
  $("hosts-filter").addEventListener("input", () => history.length && renderHosts(history[history.length - 1], back(RATE_S)));
  $("hosts-busy").addEventListener("change", () => history.length && renderHosts(history[history.length - 1], back(RATE_S)));

  function renderStore(st) {
    $("store-panel").hidden = !st;
    if (!st) return;
    $("store-kind").textContent = st.store;
    $("store-up").textContent = st.up ? "up" : "down";
    $("store-up").className = "pill " + (st.up ? "ok" : "bad");
    $("store-replicas").textContent = String(st.replicas);
    $("store-since").textContent = st.since;
  }

  // ---- limits form (PATCH /api/v1/limits)

  // fillForm shows the live limits, unless the user is editing them.
  function fillForm(l, force) {
    if (!force && (formDirty || $("limits-form").contains(document.activeElement))) return;
    $("limit-rate").value = String(l.rate);
    $("limit-burst").value = String(l.burst);
    $("limit-concurrency").value = String(l.concurrency);
  }

  for (const id of ["limit-rate", "limit-burst", "limit-concurrency"]) {
    $(id).addEventListener("input", () => { formDirty = true; });
  }

  $("limits-reset").addEventListener("click", () => {
    formDirty = false;
    if (history.length) fillForm(history[history.length - 1].s.limits, true);
    $("limits-status").textContent = "";
  });

  $("limits-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    applyLimits();
  });

  async function applyLimits() {
    const status = $("limits-status");
    const body = {
      rate: Number($("limit-rate").value),
      burst: Number($("limit-burst").value),
      concurrency: Number($("limit-concurrency").value),
    };
    status.className = "status";
    status.textContent = "applying…";
    try {
      const resp = await api("PATCH", "/api/v1/limits", body);
      if (resp.status === 401) {
        status.textContent = "";
        askToken(token() ? "That token was refused." : "Changing the limits needs the admin token.", applyLimits);
        return;
      }
      const doc = await resp.json();
      if (!resp.ok) {
        status.className = "status bad";
        status.textContent = doc.error || ("status " + resp.status);
        return;
      }
      formDirty = false;
      fillForm(doc, true);
      status.className = "status ok";
      status.textContent = "applied: rate " + fmtLimit(doc.rate) + ", burst " + doc.burst + ", concurrency " + fmtLimit(doc.concurrency);
      schedule(0);
    } catch (e) {
      status.className = "status bad";
      status.textContent = e.message;
    }
  }

  schedule(0);
})();
