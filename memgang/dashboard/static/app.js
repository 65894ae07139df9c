// memgang dashboard: renders the state the server streams over server-sent events.
// Plain JS, no libraries: the flock is an SVG drawn by a small force layout, the rate charts
// are an SVG sparkline and a canvas. Every piece of data goes into the page as text
// (textContent), never as HTML.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const LATEST_SHOWN = 12;
  const STALE_MS = 5000; // the server pushes every second: this long without a push = offline

  let wanted = new URLSearchParams(location.search).get("swarm") || "";
  let es = null;
  let sse = "connecting"; // connecting | open | down
  let last = null; // the latest state
  let lastMsgAt = 0;
  let skew = 0; // Date.now() - server's now_ms
  const seenWrites = new Set();
  let firstRender = true;

  // ---- helpers -----------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "style") node.style.cssText = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }
  function fmtNum(n) {
    if (n === null || n === undefined) return "–";
    if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + "k";
    return Number.isInteger(n) ? String(n) : n.toFixed(1);
  }
  function fmtBytes(b) {
    if (!b) return "0 B";
    const u = ["B", "KB", "MB", "GB"];
    let i = 0;
    while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
    return (i ? b.toFixed(1) : b) + " " + u[i];
  }
  function fmtDur(ms) {
    if (!ms || ms < 0) return "0 s";
    if (ms < 1000) return Math.round(ms) + " ms";
    const s = ms / 1000;
    if (s < 60) return s.toFixed(1) + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + "m " + Math.round(s % 60) + "s";
    return Math.floor(m / 60) + "h " + (m % 60) + "m";
  }
  function ago(ms) {
    if (!ms || !last) return "–";
    const d = Math.max(0, (last.now_ms || 0) - ms);
    if (d < 1500) return "now";
    if (d < 60000) return Math.round(d / 1000) + "s";
    if (d < 3600000) return Math.round(d / 60000) + "m";
    return Math.round(d / 3600000) + "h";
  }
  function clock(ts) {
    const d = new Date(ts);
    return isNaN(d) ? "" : d.toTimeString().slice(0, 8);
  }
  function replaceRows(tbody, rows) {
    tbody.replaceChildren(...rows);
  }
  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  // ---- connection --------------------------------------------------------------------------
  function connect() {
    if (es) es.close();
    sse = "connecting";
    const q = wanted ? "?swarm=" + encodeURIComponent(wanted) : "";
    es = new EventSource("/api/stream" + q);
    es.addEventListener("state", (m) => {
      let data;
      try { data = JSON.parse(m.data); } catch (e) { return; }
      sse = "open";
      lastMsgAt = Date.now();
      try { render(data); } catch (e) { console.error("render failed", e); }
    });
    es.onopen = () => { sse = "open"; lastMsgAt = Date.now(); renderConn(); };
    es.onerror = () => {
      sse = "down";
      renderConn();
      if (es.readyState === EventSource.CLOSED) setTimeout(connect, 1500);
      // otherwise EventSource reconnects by itself (retry: 1000 from the server)
    };
  }
  setInterval(() => {
    if (sse === "open" && Date.now() - lastMsgAt > STALE_MS) {
      sse = "down"; // a silent connection (server frozen, network gone): start over
      renderConn();
      connect();
    }
  }, 1000);

  function renderConn() {
    const pill = $("conn");
    const banner = $("banner");
    let state, text, detail = null;
    const redis = last && last.status ? last.status.redis : "connecting";
    if (sse !== "open") {
      state = "offline"; text = "dashboard offline";
      detail = "The dashboard server cannot be reached; reconnecting…";
    } else if (redis === "disconnected") {
      state = "redis-down"; text = "Redis disconnected";
      detail = "Redis is unreachable; retrying every second. " + (last.status.error || "");
    } else if (redis === "connecting" || last.status.events === "connecting") {
      state = "connecting"; text = "connecting…";
    } else if (last.status.events === "reconnecting") {
      // Redis answers the poller, but the event feed is still on its reconnect backoff
      state = "catching-up"; text = "events reconnecting";
      detail = "Redis answers again; the event feed is reconnecting and will catch up from the log.";
    } else {
      state = "live"; text = "live";
    }
    pill.dataset.state = state;
    pill.textContent = text;
    document.body.classList.toggle("stale", state === "offline" || state === "redis-down");
    if (detail && state !== "connecting") {
      banner.hidden = false;
      banner.dataset.state = state;
      banner.replaceChildren(el("span", {}, text + " — retrying"), el("span", { class: "detail" }, detail));
    } else {
      banner.hidden = true;
      banner.dataset.state = state;
    }
  }

  // ---- render ------------------------------------------------------------------------------
  function render(s) {
    last = s;
    skew = Date.now() - s.now_ms;
    renderConn();
    renderHeader(s);
    renderCards(s);
    renderAgents(s);
    updateFlock(s);
    renderRate(s);
    renderObjects(s);
    renderLocks(s);
    renderMemo(s);
    renderFeed(s);
    const bad = $("malformed");
    bad.hidden = !s.malformed;
    bad.textContent = s.malformed ? s.malformed + " malformed events ignored" : "";
    firstRender = false;
  }

  function renderHeader(s) {
    $("swarm-name").textContent = s.swarm || "(waiting for a swarm)";
    $("url").textContent = s.url || "";
    document.title = "memgang · " + (s.swarm || "dashboard");
    const sel = $("swarm-select");
    sel.hidden = s.fixed || (s.swarms || []).length < 2;
    if (!sel.hidden) {
      const current = [...sel.options].map((o) => o.value).join("\n");
      if (current !== s.swarms.join("\n")) {
        sel.replaceChildren(...s.swarms.map((n) => el("option", { value: n }, n)));
      }
      sel.value = s.swarm || "";
    }
  }
  $("swarm-select").addEventListener("change", (e) => {
    wanted = e.target.value;
    const u = new URL(location.href);
    u.searchParams.set("swarm", wanted);
    history.replaceState(null, "", u);
    connect();
  });

  function renderCards(s) {
    $("k-alive").textContent = fmtNum(s.totals.alive);
    $("k-agents").textContent = fmtNum(s.totals.agents);
    $("k-objects").textContent = fmtNum(s.objects.total);
    $("k-bytes").textContent = fmtBytes(s.objects.bytes);
    $("k-rate").textContent = fmtNum(Math.round(s.rate.per_s * 10) / 10);
    $("k-events").textContent = fmtNum(s.totals.events) + " total";
    const held = s.locks.filter((l) => l.holders.length).length;
    const waiting = s.locks.reduce((n, l) => n + l.queue.length, 0);
    $("k-locks").textContent = fmtNum(held);
    $("k-waiting").textContent = waiting ? waiting + " waiting" : "";
    $("k-saved").textContent = fmtDur(s.memo.saved_ms);
    $("k-hitratio").textContent = s.memo.hit_ratio === null ? "" :
      Math.round(s.memo.hit_ratio * 100) + "% reused";
    drawSpark(s.rate.counts);
  }

  function drawSpark(counts) {
    const box = $("spark");
    const n = counts.length;
    const max = Math.max(1, ...counts);
    const pts = counts.map((c, i) => [(i / Math.max(1, n - 1)) * 120, 27 - (c / max) * 24]);
    const line = pts.map((p, i) => (i ? "L" : "M") + p[0].toFixed(1) + " " + p[1].toFixed(1)).join("");
    box.replaceChildren(
      svg("path", { class: "area", d: line + "L120 28L0 28Z" }),
      svg("path", { class: "line", d: line }),
    );
  }

  const STATUS_TEXT = { alive: "alive", active: "active", idle: "idle", gone: "gone" };
  function renderAgents(s) {
    const rows = s.agents.map((a) => {
      const action = a.last_action ?
        el("span", { class: "action" }, a.last_action.replace(/_/g, " ") + " ",
          a.last_local ? el("b", {}, a.last_local) : null) : el("span", { class: "action" }, "–");
      return el("tr", { "data-agent": a.name, "data-status": a.status },
        el("td", { class: "agent-name", title: STATUS_TEXT[a.status] || a.status },
          el("span", { class: "dot " + a.status }), a.name),
        el("td", {}, a.role ? el("span", { class: "badge" }, a.role) : ""),
        el("td", {}, action),
        el("td", { class: "num" }, fmtNum(a.objects)),
        el("td", { class: "num" }, ago(a.last_ms)));
    });
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 5, class: "empty" }, "No agents yet.")));
    replaceRows($("agents"), rows);
  }

  // ---- the flock ---------------------------------------------------------------------------
  const flock = { nodes: new Map(), edges: [], alpha: 1, edgeMs: new Map(), agentMs: new Map(),
                  layers: null, pulses: [] };

  function hash(str) {
    let h = 2166136261;
    for (let i = 0; i < str.length; i++) { h ^= str.charCodeAt(i); h = Math.imul(h, 16777619); }
    return (h >>> 0) / 4294967295;
  }

  function flockLayers() {
    if (flock.layers) return flock.layers;
    const root = $("flock");
    const defs = svg("defs");
    const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5",
      markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse", markerUnits: "userSpaceOnUse" });
    marker.append(svg("path", { d: "M0 0L10 5L0 10z", fill: css("--edge") || "#5b6b93" }));
    defs.append(marker);
    const edges = svg("g", { class: "edges" });
    const pulses = svg("g", { class: "pulses" });
    const nodes = svg("g", { class: "nodes" });
    root.append(defs, edges, pulses, nodes);
    flock.layers = { root, edges, pulses, nodes };
    return flock.layers;
  }

  function updateFlock(s) {
    const L = flockLayers();
    const W = L.root.clientWidth || 800, H = L.root.clientHeight || 470;
    L.root.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const agents = new Map(s.agents.map((a) => [a.name, a]));
    const names = new Set(agents.keys());
    for (const e of s.edges) { names.add(e.source); names.add(e.target); }
    let changed = false;
    for (const name of names) {
      if (!flock.nodes.has(name)) {
        const angle = hash(name) * Math.PI * 2, r = 60 + hash(name + "r") * 120;
        const g = svg("g", { class: "node", "data-agent": name });
        const body = svg("circle", { class: "body", r: 10 });
        const ring = svg("circle", { class: "ring", r: 10 });
        const label = svg("text", { "text-anchor": "middle", dy: "-16" });
        const role = svg("text", { class: "role", "text-anchor": "middle", dy: "27" });
        const title = svg("title");
        g.append(ring, body, label, role, title);
        L.nodes.append(g);
        flock.nodes.set(name, { name, x: W / 2 + Math.cos(angle) * r, y: H / 2 + Math.sin(angle) * r,
                                vx: 0, vy: 0, g, body, label, role, title, r: 10 });
        changed = true;
      }
    }
    for (const [name, n] of flock.nodes) {
      if (!names.has(name)) { n.g.remove(); flock.nodes.delete(name); changed = true; }
    }
    for (const [name, n] of flock.nodes) {
      const a = agents.get(name);
      const status = a ? a.status : "idle";
      n.g.setAttribute("class", "node " + status);
      n.r = 9 + Math.min(12, Math.sqrt(a ? a.objects : 0) * 1.6);
      n.body.setAttribute("r", n.r.toFixed(1));
      n.label.textContent = name;
      n.role.textContent = a && a.role ? a.role : "";
      n.title.textContent = `${name} · ${status}` + (a ? ` · ${a.objects} objects · ${a.events} events` : "");
      const prev = flock.agentMs.get(name);
      if (a && a.last_ms && prev !== undefined && a.last_ms > prev) flash(n);
      if (a && a.last_ms) flock.agentMs.set(name, a.last_ms);
    }
    // edges
    const maxW = Math.max(1, ...s.edges.map((e) => e.weight));
    const keep = new Map();
    for (const e of s.edges) {
      const id = e.source + "\u2192" + e.target;
      let entry = flock.edges.find((x) => x.id === id);
      if (!entry) {
        const path = svg("path", { class: "edge", "marker-end": "url(#arrow)", "data-edge": id });
        const title = svg("title");
        path.append(title);
        L.edges.append(path);
        entry = { id, path, title };
        changed = true;
      }
      entry.source = e.source; entry.target = e.target; entry.weight = e.weight;
      entry.width = 1.2 + 5.5 * Math.log1p(e.weight) / Math.log1p(maxW);
      entry.path.setAttribute("stroke-width", entry.width.toFixed(2));
      entry.title.textContent = `${e.target} built on ${e.source}'s memory ${e.weight}×`;
      const prev = flock.edgeMs.get(id);
      if (prev !== undefined && e.last_ms > prev && !firstRender) pulse(entry);
      flock.edgeMs.set(id, e.last_ms);
      keep.set(id, entry);
    }
    for (const x of flock.edges) if (!keep.has(x.id)) { x.path.remove(); changed = true; }
    flock.edges = [...keep.values()];
    if (changed) flock.alpha = 1;
    $("flock-empty").hidden = flock.nodes.size > 0;
  }

  function flash(n) {
    n.g.classList.remove("flash");
    void n.g.getBBox; // restart the CSS animation
    requestAnimationFrame(() => n.g.classList.add("flash"));
  }

  function pulse(edge) {
    edge.path.classList.add("hot");
    clearTimeout(edge.cool);
    edge.cool = setTimeout(() => edge.path.classList.remove("hot"), 1500);
    if (flock.pulses.length > 60) return;
    const dot = svg("circle", { class: "spark-dot", r: 4 });
    flock.layers.pulses.append(dot);
    flock.pulses.push({ dot, edge, t0: performance.now() });
  }

  function edgePath(e) {
    const a = flock.nodes.get(e.source), b = flock.nodes.get(e.target);
    if (!a || !b) return "";
    const dx = b.x - a.x, dy = b.y - a.y;
    // bend a little so that a->b and b->a stay apart; stop at the target's rim
    const mx = (a.x + b.x) / 2 - dy * 0.12, my = (a.y + b.y) / 2 + dx * 0.12;
    const tx = b.x - (b.x - mx) / Math.hypot(b.x - mx, b.y - my) * (b.r + 3);
    const ty = b.y - (b.y - my) / Math.hypot(b.x - mx, b.y - my) * (b.r + 3);
    return `M${a.x.toFixed(1)} ${a.y.toFixed(1)}Q${mx.toFixed(1)} ${my.toFixed(1)} ${tx.toFixed(1)} ${ty.toFixed(1)}`;
  }

  function step() {
    const L = flock.layers;
    if (!L) { requestAnimationFrame(step); return; }
    const W = L.root.clientWidth || 800, H = L.root.clientHeight || 470;
    const nodes = [...flock.nodes.values()];
    if (flock.alpha > 0.005) {
      const k = flock.alpha;
      const span = Math.min(W, H);
      const rest = Math.max(110, Math.min(260, span * 0.42)); // an edge's natural length
      const push = rest * rest * 0.9; // repulsion: neighbours end up about `rest` apart
      for (let i = 0; i < nodes.length; i++) {
        const a = nodes[i];
        for (let j = i + 1; j < nodes.length; j++) {
          const b = nodes[j];
          let dx = a.x - b.x, dy = a.y - b.y;
          let d2 = dx * dx + dy * dy;
          if (d2 < 1) { dx = Math.random() - 0.5; dy = Math.random() - 0.5; d2 = 1; }
          const f = Math.min(12, push / d2) * k;
          const d = Math.sqrt(d2);
          a.vx += dx / d * f; a.vy += dy / d * f; b.vx -= dx / d * f; b.vy -= dy / d * f;
        }
      }
      for (const e of flock.edges) {
        const a = flock.nodes.get(e.source), b = flock.nodes.get(e.target);
        if (!a || !b) continue;
        const dx = b.x - a.x, dy = b.y - a.y, d = Math.hypot(dx, dy) || 1;
        const f = (d - rest) * 0.01 * k;
        a.vx += dx / d * f; a.vy += dy / d * f; b.vx -= dx / d * f; b.vy -= dy / d * f;
      }
      for (const n of nodes) {
        n.vx += (W / 2 - n.x) * 0.004 * k; n.vy += (H / 2 - n.y) * 0.007 * k;
        n.vx *= 0.82; n.vy *= 0.82;
        n.x = Math.max(50, Math.min(W - 50, n.x + n.vx));
        n.y = Math.max(34, Math.min(H - 40, n.y + n.vy));
      }
      flock.alpha *= 0.985;
    }
    for (const n of nodes) n.g.setAttribute("transform", `translate(${n.x.toFixed(1)} ${n.y.toFixed(1)})`);
    for (const e of flock.edges) e.path.setAttribute("d", edgePath(e));
    const now = performance.now();
    flock.pulses = flock.pulses.filter((p) => {
      const t = (now - p.t0) / 900;
      if (t >= 1 || !p.edge.path.isConnected) { p.dot.remove(); return false; }
      const len = p.edge.path.getTotalLength();
      const pt = p.edge.path.getPointAtLength(len * t);
      p.dot.setAttribute("cx", pt.x.toFixed(1));
      p.dot.setAttribute("cy", pt.y.toFixed(1));
      p.dot.setAttribute("opacity", (1 - t * 0.6).toFixed(2));
      return true;
    });
    requestAnimationFrame(step);
  }
  requestAnimationFrame(step);

  function niceCeil(x) {
    const p = Math.pow(10, Math.floor(Math.log10(x)));
    for (const m of [1, 2, 5, 10]) if (m * p >= x) return m * p;
    return 10 * p;
  }

  // ---- rate chart --------------------------------------------------------------------------
  function renderRate(s) {
    const canvas = $("rate");
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const counts = s.rate.counts, n = counts.length;
    const max = Math.max(1, ...counts);
    const top = niceCeil(max);
    const padL = 34, padB = 18, padT = 8, cw = w - padL - 6, ch = h - padB - padT;
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = css("--muted");
    ctx.strokeStyle = css("--panel-edge");
    ctx.lineWidth = 1;
    for (const f of [0, 0.5, 1]) {
      const y = padT + ch - ch * f + 0.5;
      ctx.beginPath(); ctx.moveTo(padL, y); ctx.lineTo(w - 6, y); ctx.stroke();
      ctx.textAlign = "right"; ctx.textBaseline = "middle";
      ctx.fillText(fmtNum(top * f), padL - 6, y);
    }
    ctx.textBaseline = "top";
    for (const [i, label, align] of [[0, "−2 min", "left"], [n / 2, "−1 min", "center"], [n - 1, "now", "right"]]) {
      ctx.textAlign = align;
      ctx.fillText(label, padL + (i / (n - 1)) * cw, h - padB + 4);
    }
    const grad = ctx.createLinearGradient(0, padT, 0, padT + ch);
    grad.addColorStop(0, css("--accent"));
    grad.addColorStop(1, css("--accent2"));
    const bw = cw / n;
    ctx.fillStyle = grad;
    for (let i = 0; i < n; i++) {
      if (!counts[i]) continue;
      const bh = Math.max(1.5, (counts[i] / top) * ch);
      ctx.fillRect(padL + i * bw + 0.5, padT + ch - bh, Math.max(1, bw - 1), bh);
    }
  }

  // ---- objects, locks, memo, feed ------------------------------------------------------------
  function bars(ul, counts) {
    const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]).slice(0, 10);
    const max = Math.max(1, ...entries.map((e) => e[1]));
    const items = entries.map(([name, n]) => el("li", { "data-name": name },
      el("span", { class: "n", title: name }, name),
      el("span", { class: "track" }, el("span", { class: "fill", style: `width:${(n / max * 100).toFixed(1)}%` })),
      el("span", { class: "c" }, fmtNum(n))));
    if (!items.length) items.push(el("li", { class: "empty" }, "none"));
    ul.replaceChildren(...items);
  }

  function renderObjects(s) {
    bars($("by-agent"), s.objects.by_agent);
    bars($("by-group"), s.objects.by_group);
    const rows = s.objects.latest.slice(0, LATEST_SHOWN).map((o) => {
      const id = o.key + "@" + o.version;
      const fresh = !firstRender && !seenWrites.has(id);
      seenWrites.add(id);
      return el("tr", { "data-key": o.key, "data-version": o.version, class: fresh ? "fresh" : null },
        el("td", { class: "key", title: o.key }, o.local),
        el("td", { class: "agent-name" }, o.agent),
        el("td", { class: "num" }, "v" + o.version),
        el("td", { class: "num" }, fmtBytes(o.size)),
        el("td", { class: "num" }, ago(o.seen_ms)));
    });
    if (seenWrites.size > 5000) seenWrites.clear();
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 5, class: "empty" }, "No writes seen yet.")));
    replaceRows($("latest"), rows);
  }

  const leaseSeen = new Map(); // holder -> the longest lease left seen: the bar's 100%
  function renderLocks(s) {
    const live = new Set();
    const rows = s.locks.map((l) => {
      const holders = el("td", {});
      let left = null, full = null;
      for (const h of l.holders) {
        holders.append(el("span", { class: "mode " + h.mode }, h.mode),
          el("span", { class: "agent-name" }, h.agent + " "));
        if (h.lease_left_ms === null) continue;
        const id = l.name + "|" + h.agent + "|" + h.token;
        live.add(id);
        const max = Math.max(leaseSeen.get(id) || 0, h.lease_left_ms);
        leaseSeen.set(id, max);
        if (left === null || h.lease_left_ms < left) { left = h.lease_left_ms; full = max; }
      }
      const queue = l.queue.length ?
        l.queue.map((w) => w.agent + (w.mode ? " (" + w.mode + ")" : "")).join(", ") : "–";
      const lease = left === null ? el("td", {}, "–") :
        el("td", { class: "nowrap" }, el("span", { class: "lease" + (left < 0.25 * full ? " low" : "") },
          el("i", { style: `width:${(full ? left / full * 100 : 0).toFixed(0)}%` })), fmtDur(left));
      return el("tr", { "data-lock": l.name, "data-holders": l.holders.map((h) => h.agent).join(" "),
                        "data-queue": l.queue.map((w) => w.agent).join(" ") },
        el("td", { class: "key", title: l.name }, l.local), holders, el("td", {}, queue), lease);
    });
    for (const id of [...leaseSeen.keys()]) if (!live.has(id)) leaseSeen.delete(id);
    replaceRows($("locks"), rows);
    $("locks-empty").hidden = rows.length > 0;
  }

  function renderMemo(s) {
    const m = s.memo;
    $("m-hits").textContent = fmtNum(m.hits);
    $("m-waits").textContent = fmtNum(m.waits);
    $("m-computed").textContent = fmtNum(m.computed);
    $("m-saved").textContent = fmtDur(m.saved_ms);
    $("m-bar").style.width = ((m.hit_ratio || 0) * 100).toFixed(1) + "%";
    $("m-note").textContent = m.asked ?
      `${Math.round((m.hit_ratio || 0) * 100)}% of ${fmtNum(m.asked)} requests were served by work another agent had done (hits) or was doing (waits).` :
      "No compute-once calls yet.";
  }

  function renderFeed(s) {
    const items = s.feed.map((e) => el("li", { "data-type": e.type },
      el("span", { class: "t" }, clock(e.ts)),
      el("span", { class: "ty " + e.type }, e.type),
      el("span", { class: "what" }, e.agent ? el("b", {}, e.agent) : null, " ",
        e.local || "", e.detail ? " · " + e.detail : "")));
    if (!items.length) items.push(el("li", { class: "empty" }, "Waiting for events…"));
    $("feed").replaceChildren(...items);
  }

  window.addEventListener("resize", () => { flock.alpha = Math.max(flock.alpha, 0.3); if (last) renderRate(last); });
  renderConn();
  connect();
})();
