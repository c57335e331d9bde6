"use strict";
// Renders a saeembed report from the JSON in #report-data. Document text is only ever set
// through textContent (never innerHTML), so no input can inject markup or script.
(function () {
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const root = document.getElementById("report");
  const SVGNS = "http://www.w3.org/2000/svg";
  const COLORS = ["#c2410c", "#0e7490"];
  const RGB = ["194,65,12", "14,116,144"];

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "text") e.textContent = v;
      else if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const kid of kids) {
      if (kid === null || kid === undefined) continue;
      e.append(typeof kid === "string" ? document.createTextNode(kid) : kid);
    }
    return e;
  }
  function sv(tag, attrs, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function num(v, col) {
    if (v === null || v === undefined) return "–";
    if (typeof v !== "number") return String(v);
    if (col === "feature" || col === "pair_id") return String(v);
    if (INT_COLS.test(col || "")) return v.toLocaleString("en");
    if (col === "p" || col === "q" || col === "p_bonferroni") return v === 0 ? "0" : v < 0.001 ? v.toExponential(1) : v.toPrecision(2);
    if (col && (col.startsWith("freq") || col === "density" || col === "prevalence")) return (100 * v).toFixed(1) + "%";
    if (Number.isInteger(v) && Math.abs(v) >= 1) return v.toLocaleString("en");
    if (v !== 0 && Math.abs(v) < 0.01) return v.toPrecision(2);
    return Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(3);
  }
  const INT_COLS = /^(n_.*|both|only_[ab]|size_[ab]|n_docs|n_differ|n_pairs)$/;
  const pct = (v) => (100 * v).toFixed(1) + "%";
  const clip = (s, n) => (s && s.length > n ? s.slice(0, n - 1) + "…" : s || "");
  const labelOf = (o) => o.label || "(unlabelled)";

  // ---- document text with shaded tokens ---------------------------------------------------------
  function docText(ex, scale, side) {
    const p = el("p", { class: "doc" });
    const t = ex.t;
    if (ex.o > 0) p.append("…");
    const spans = (ex.s || []).slice().sort((a, b) => a[0] - b[0]);
    let at = 0;
    const rgb = RGB[side === 1 ? 1 : 0];
    for (const [s, e, v] of spans) {
      if (s < at || e <= s) continue;
      if (s > at) p.append(t.slice(at, s));
      const alpha = Math.min(1, 0.12 + 0.78 * Math.max(0, v) / (scale || 1));
      p.append(el("mark", { class: "tok", "data-v": String(v), title: "activation " + v, style: "background: rgba(" + rgb + "," + alpha.toFixed(3) + ")", text: t.slice(s, e) }));
      at = e;
    }
    if (at < t.length) p.append(t.slice(at));
    if (ex.o + t.length < ex.n) p.append("…");
    return p;
  }
  function example(ex, scale, side, extra) {
    const bits = [ex.r || ex.c + " · doc " + ex.d, ex.v > 0 ? "max " + num(ex.v) : "not active"];
    if (extra) bits.unshift(extra);
    return el("div", { class: "ex side-" + (side === 1 ? 1 : 0), "data-doc": String(ex.d), title: "doc_id " + ex.d },
      el("div", { class: "exmeta", text: bits.join(" · ") }), docText(ex, scale, side));
  }

  // ---- charts -------------------------------------------------------------------------------------
  function histogram(h, names) {
    const W = 440, H = 150, L = 40, B = 24, T = 8;
    const n = h.edges.length - 1, k = h.counts.length;
    const shares = h.counts.map((c, i) => c.map((x) => x / Math.max(1, h.sizes[i])));
    const top = Math.max(1e-9, ...shares.flat());
    const s = sv("svg", { viewBox: `0 0 ${W} ${H + 30}`, width: W, height: H + 30, class: "hist", role: "img" });
    const bw = (W - L - 8) / n;
    shares.forEach((side, i) => side.forEach((v, j) => {
      const h2 = (H - B - T) * v / top;
      const r = sv("rect", { x: L + j * bw + (i * bw) / k + 1, y: H - B - h2, width: Math.max(1, bw / k - 2), height: h2, fill: COLORS[i] });
      r.append(sv("title", {}, `${names[i]}: ${h.counts[i][j]} documents (${pct(v)}) at ${num(h.edges[j])}–${num(h.edges[j + 1])}`));
      s.append(r);
    }));
    s.append(sv("line", { x1: L, x2: W - 8, y1: H - B, y2: H - B, class: "axis" }));
    s.append(sv("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
    if (h.strong !== null && h.strong !== undefined && h.strong <= h.edges[n]) {
      // the strong threshold: a document above it "has" the concept in the diff's default count
      const x = L + (W - L - 8) * h.strong / Math.max(1e-12, h.edges[n]);
      const mark = sv("g", { class: "strong-mark" });
      mark.append(sv("line", { x1: x, x2: x, y1: T, y2: H - B, stroke: "#333", "stroke-dasharray": "4 3" }),
        sv("text", { x: x + 3, y: T + 8, "text-anchor": "start" }, "strong ≥ " + num(h.strong)),
        sv("title", {}, `Above ${num(h.strong)} (half this concept's 99th percentile) a document has it strongly: what diff and correlate count by default (--measure strong)`));
      s.append(mark);
    }
    s.append(sv("text", { x: L, y: H - B + 14, "text-anchor": "start" }, "0"));
    s.append(sv("text", { x: W - 8, y: H - B + 14, "text-anchor": "end" }, num(h.edges[n])));
    s.append(sv("text", { x: (L + W) / 2, y: H - B + 14, "text-anchor": "middle" }, "pooled activation"));
    s.append(sv("text", { x: L - 4, y: T + 8, "text-anchor": "end" }, pct(top)));
    s.append(sv("text", { x: L - 4, y: H - B, "text-anchor": "end" }, "0%"));
    names.forEach((name, i) => {
      s.append(sv("rect", { x: L + i * 190, y: H + 8, width: 10, height: 10, fill: COLORS[i] }));
      s.append(sv("text", { x: L + 14 + i * 190, y: H + 17 }, clip(name, 18) + ": no activation " + pct(h.absent[i] / Math.max(1, h.sizes[i]))));
    });
    return s;
  }
  function forest(rows, names, opts) {
    // rows: {label, est, lo, hi, side, href}
    const W = 1100, R = 18, L = 330, T = 24;
    const H = T + rows.length * R + 18;
    let lo = Math.min(0, ...rows.map((r) => r.lo)), hi = Math.max(0, ...rows.map((r) => r.hi));
    if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
    const x = (v) => L + (W - L - 20) * (v - lo) / (hi - lo);
    const s = sv("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", class: "forest", role: "img" });
    s.append(sv("line", { x1: x(0), x2: x(0), y1: T - 6, y2: H - 4, class: "zero" }));
    s.append(sv("text", { x: x(lo), y: 12, "text-anchor": "start" }, num(lo)));
    s.append(sv("text", { x: x(hi), y: 12, "text-anchor": "end" }, num(hi)));
    s.append(sv("text", { x: x(0), y: 12, "text-anchor": "middle" }, opts.axis));
    const ends = opts.ends || [`more in ${names[0]} →`, `← more in ${names[1]}`];
    s.append(sv("text", { x: W - 20, y: H - 4, "text-anchor": "end", fill: COLORS[0] }, ends[0]));
    s.append(sv("text", { x: L, y: H - 4, "text-anchor": "start", fill: COLORS[1] }, ends[1]));
    rows.forEach((r, i) => {
      const y = T + i * R + R / 2;
      const g = sv("g", { class: "frow" });
      const label = sv("text", { x: L - 8, y: y + 4, "text-anchor": "end" }, clip(r.label, 52));
      if (r.href) { const a = sv("a", { href: r.href }); a.append(label); g.append(a); } else g.append(label);
      g.append(sv("line", { x1: x(r.lo), x2: x(r.hi), y1: y, y2: y, stroke: COLORS[r.side], "stroke-width": 2 }));
      const c = sv("circle", { cx: x(r.est), cy: y, r: 4, fill: COLORS[r.side] });
      c.append(sv("title", {}, `${r.label}: ${num(r.est)} [${num(r.lo)}, ${num(r.hi)}]`));
      g.append(c);
      s.append(g);
    });
    return s;
  }

  // ---- the sortable, filterable table ---------------------------------------------------------------
  function dataTable(cols, data, opts) {
    const n = data[cols[0]] ? data[cols[0]].length : 0;
    const state = { order: [...Array(n).keys()], shown: null, sort: null, dir: 1, page: 0, size: opts.pageSize || 100 };
    const wrap = el("div", { class: "table-wrap" });
    const count = el("span", { class: "count", id: opts.id + "-count" });
    const prev = el("button", { type: "button", text: "‹ prev", onclick: () => { state.page--; draw(); } });
    const next = el("button", { type: "button", text: "next ›", onclick: () => { state.page++; draw(); } });
    const where = el("span", { class: "note" });
    const table = el("table", { class: "data", id: opts.id });
    const head = el("tr");
    const th = {};
    for (const c of cols) {
      const isText = c === "label" || c === "side" || c === "effect" || c === "label_source" || c === "test";
      th[c] = el("th", { "data-col": c, class: isText ? "text" : "", text: opts.names[c] || c, title: "sort by " + c,
        onclick: () => { if (state.sort === c) state.dir = -state.dir; else { state.sort = c; state.dir = isText ? 1 : (c === "p" || c === "q" ? 1 : -1); } apply(); } });
      head.append(th[c]);
    }
    const body = el("tbody");
    table.append(el("thead", {}, head), body);
    wrap.append(el("div", { class: "pager" }, count, prev, next, where), table);
    function apply() {
      let idx = [...Array(n).keys()].filter((i) => opts.filter(i));
      if (state.sort) {
        const v = data[state.sort] || [];
        const d = state.dir;
        idx.sort((a, b) => {
          const x = v[a], y = v[b];
          if (x === y) return a - b;
          if (x === null || x === undefined) return 1;
          if (y === null || y === undefined) return -1;
          return (x < y ? -1 : 1) * d;
        });
      }
      for (const c of cols) th[c].removeAttribute("aria-sort");
      if (state.sort) th[state.sort].setAttribute("aria-sort", state.dir > 0 ? "ascending" : "descending");
      state.shown = idx;
      state.page = 0;
      draw();
    }
    function draw() {
      const idx = state.shown, pages = Math.max(1, Math.ceil(idx.length / state.size));
      state.page = Math.max(0, Math.min(state.page, pages - 1));
      body.replaceChildren();
      for (const i of idx.slice(state.page * state.size, (state.page + 1) * state.size)) {
        const tr = el("tr", { "data-row": String(i), class: opts.rowClass ? opts.rowClass(i) : "" });
        for (const c of cols) {
          const v = data[c] ? data[c][i] : null;
          const isText = typeof v === "string" || v === null && (c === "label");
          const td = el("td", { class: isText ? "text" : "" });
          const href = c === "label" && opts.href ? opts.href(i) : null;
          if (href) td.append(el("a", { href, text: v === null ? "(unlabelled)" : v }));
          else td.textContent = num(v, c);
          tr.append(td);
        }
        body.append(tr);
      }
      count.textContent = `${idx.length.toLocaleString("en")} of ${n.toLocaleString("en")} ${opts.what}`;
      where.textContent = `page ${state.page + 1} of ${pages}`;
      prev.disabled = state.page === 0;
      next.disabled = state.page >= pages - 1;
    }
    apply();
    return { node: wrap, apply, state };
  }
  function filters(spec, onchange) {
    // spec: [{id, kind: "search"|"select", label, options: [[value, text]]}]
    const box = el("div", { class: "controls" });
    const inputs = {};
    for (const f of spec) {
      let input;
      if (f.kind === "search") input = el("input", { type: "search", id: f.id, placeholder: f.label, "aria-label": f.label });
      else {
        input = el("select", { id: f.id, "aria-label": f.label });
        for (const [v, t] of f.options) input.append(el("option", { value: v, text: t }));
      }
      input.addEventListener("input", onchange);
      input.addEventListener("change", onchange);
      inputs[f.id] = input;
      box.append(f.kind === "search" ? input : el("label", {}, f.label + " ", input));
    }
    return { node: box, inputs };
  }
  const Q_OPTIONS = [["", "any"], ["0.05", "< 0.05"], ["0.01", "< 0.01"], ["0.001", "< 0.001"]];

  function cooc(list, href) {
    if (!list || !list.length) return el("p", { class: "note", text: "none in at least one shared document" });
    const ul = el("ul", { class: "cooc" });
    for (const c of list) {
      const name = `#${c.feature} ${labelOf(c)}`;
      const link = href(c.feature);
      ul.append(el("li", {}, link ? el("a", { href: link, text: name }) : name,
        el("span", { class: "note", text: ` · ${c.n} docs together · lift ${c.lift.toFixed(2)} · Jaccard ${c.jaccard.toFixed(2)}` })));
    }
    return ul;
  }
  function alikeNote(ids) {
    // concepts that fire on the same things as this one, folded into its row
    if (!ids || !ids.length) return "";
    const shown = ids.slice(0, 3).join(", ");
    return `  [+${shown}${ids.length > 3 ? ` and ${ids.length - 3} more` : ""} alike]`;
  }
  function labelLine(p) {
    const bits = [];
    if (p.label_score !== null && p.label_score !== undefined) bits.push("label score " + num(p.label_score) + " (how well the label alone tells documents with the concept from those without, on held-out documents: 0.5 is chance, 1 perfect)");
    bits.push("source " + (p.label_source === "local" ? "named from this store's documents" : (p.label_source || "none")));
    if (p.shipped_label) bits.push("shipped name: " + p.shipped_label);
    if (p.evidence && p.evidence.length) bits.push("fires here on: " + p.evidence.map((e) => `${e[0]} (${e[1]})`).join(", "));
    if (p.alike && p.alike.length) bits.push("alike (counted here): " + p.alike.map((f) => "#" + f).join(", "));
    return el("div", { class: "note label-meta", text: bits.join(" · ") });
  }
  function commands(list) {
    return el("div", {}, el("h4", { text: "Reproduce" }), ...list.map((c) => el("pre", { class: "cmd", text: c })));
  }
  function shadingNote(mode) {
    return mode === "tokens"
      ? "Shading: each token's activation, recomputed with the encoder's reader and SAE (hover a token for its value)."
      : "Shading: the stored peak token only (the encoder's reader and SAE could not be loaded here).";
  }
  const scaleOf = (h) => h.edges[h.edges.length - 1] || 1;

  // ---- themes: kinds of documents ----------------------------------------------------------------
  function themesSection(th, names, alpha) {
    // th: {method, rows: [{theme, name, kind, found_in, rule, size, n_a, n_b, share_a, share_b, diff, ci_low, ci_high, p, q, concepts, examples}]}
    const box = el("section", { id: "themes" });
    box.append(el("h2", { text: `Kinds of documents: ${th.rows.length} themes` }),
      el("p", { class: "note", text: th.method + ". A theme is a group of documents alike in their concepts, or the documents that carry several of a group of concepts found together; share = its members among the test documents of each side." }));
    const rows = th.rows.map((r) => ({ label: `${r.theme}: ${r.name}`, est: r.diff, lo: r.ci_low, hi: r.ci_high, side: r.diff >= 0 ? 0 : 1, href: "#theme-" + r.theme }));
    box.append(forest(rows, names, { axis: "0" }));
    for (const r of th.rows) {
      const sig = r.q < alpha;
      const side = r.found_in === "A" ? names[0] : names[1];
      const where = r.found_in === "both" ? " (documents both sides share: shown, not tested)"
        : r.kind === "concepts" ? ` (documents with ${r.rule} found together, more in ${side})`
        : r.found_in ? ` (alike documents, found dense in ${side})` : "";
      const head = el("h3", { id: "theme-" + r.theme, text: `Theme ${r.theme}: ${r.name}` }, el("span", { class: "note", text: where }));
      const facts = el("p", { class: "facts" },
        el("span", {}, el("span", { class: "side-a", text: names[0] }), ` ${pct(r.share_a)} (${r.n_a.toLocaleString("en")})`),
        el("span", {}, el("span", { class: "side-b", text: names[1] }), ` ${pct(r.share_b)} (${r.n_b.toLocaleString("en")})`),
        el("span", { text: `difference ${num(r.diff)} [${num(r.ci_low)}, ${num(r.ci_high)}] · p ${num(r.p, "p")} · q ${num(r.q, "q")}${sig ? " · differs" : ""}` }),
        el("span", { text: `${r.size.toLocaleString("en")} documents in all` }));
      // a large rule lists its most specific concepts; the rest are counted (all in --format json)
      const more = r.more_concepts ? ` · and ${r.more_concepts} more` : "";
      const concepts = el("p", { class: "note", text: (r.kind === "concepts" ? "its concepts: " : "distinctive concepts: ") + r.concepts.map((c) => `#${c.feature} ${c.label || "(unlabelled)"}`).join(" · ") + more });
      const ex = el("div", { class: "examples" });
      for (const e of r.examples) ex.append(el("p", { class: "doc" }, el("span", { class: e.side === "A" ? "side-a" : "side-b", text: (e.side === "A" ? names[0] : names[1]) + " " }), e.text));
      box.append(el("div", { class: "panel theme" + (sig ? " sig" : "") }, head, facts, concepts, ex));
    }
    return box;
  }
  // a filtered diff says which documents it kept (saeembed diff --where)
  function whereFact(m) {
    return m.where ? [el("span", { id: "where" }, "only documents where ", el("code", { text: m.where }))] : [];
  }
  function renderThemes() {
    const m = D.meta, names = m.sides;
    root.append(el("h1", { text: `${names[0]} vs ${names[1]}: kinds of documents` }),
      el("div", { class: "facts" },
        el("span", {}, el("span", { class: "side-a", text: names[0] }), ` ${m.sizes[0].toLocaleString("en")} documents`),
        el("span", {}, el("span", { class: "side-b", text: names[1] }), ` ${m.sizes[1].toLocaleString("en")} documents`),
        el("span", {}, "encoder ", el("b", { text: m.encoder })), ...whereFact(m)),
      el("p", { id: "headline" }, el("b", { text: String(m.significant) }), ` of ${D.themes.rows.length} themes differ at q < ${m.alpha}.`),
      ...(m.weak ? [el("p", { class: "warning", id: "weak", text: m.weak })] : []),
      themesSection(D.themes, names, m.alpha),
      el("h2", { text: "Reproduce" }), el("pre", { class: "cmd", text: m.command }));
  }

  // ---- diff ----------------------------------------------------------------------------------------
  function renderDiff() {
    const m = D.meta, t = D.table, names = m.sides;
    const n = t.feature.length;
    // a side only where the difference is significant: no direction word for the rest
    t.side = t.diff.map((d, i) => (!(t.q[i] < m.alpha) ? "n.s." : d >= 0 ? names[0] : names[1]));
    const kind = m.paired ? "paired" : m.one_vs_rest ? "one against the rest" : "two corpora";
    root.append(
      el("h1", { text: `${names[0]} vs ${names[1]}` }),
      el("div", { class: "facts" },
        el("span", {}, el("span", { class: "side-a", text: names[0] }), ` ${m.sizes[0].toLocaleString("en")} documents`),
        el("span", {}, el("span", { class: "side-b", text: names[1] }), ` ${m.sizes[1].toLocaleString("en")} documents`),
        el("span", {}, "encoder ", el("b", { text: m.encoder })),
        el("span", { text: `${kind}` }),
        el("span", {}, "measure ", el("b", { text: m.measure }), " · test ", el("b", { text: m.test || "–" }), " · sort ", el("b", { text: m.sort })), ...whereFact(m)),
      el("p", { id: "headline" }, el("b", { text: m.tested.toLocaleString("en") }), " concepts tested; ",
        el("b", { text: m.significant.toLocaleString("en") }), ` differ at q < ${m.alpha} (Benjamini-Hochberg).`),
      el("p", { class: "note", text: shadingNote(m.shading) }));
    if (m.weak) root.append(el("p", { class: "warning", id: "weak", text: m.weak }));
    if (D.themes) root.append(themesSection(D.themes, names, m.alpha));
    const panelSet = new Set(D.panels.map((p) => p.feature));
    const href = (f) => (panelSet.has(f) ? "#f" + f : null);
    const rows = [];
    const forestRows = D.forest_rows || [...Array(D.forest).keys()];
    for (const i of forestRows) rows.push({ label: `#${t.feature[i]} ${t.label[i] || "(unlabelled)"}${alikeNote(D.alike && D.alike[t.feature[i]])}`, est: t.diff[i], lo: t.ci_low[i], hi: t.ci_high[i], side: t.diff[i] >= 0 ? 0 : 1, href: href(t.feature[i]) });
    const effect = m.paired ? "paired difference" : t.freq_a ? "difference in share of documents" : "difference";
    root.append(el("h2", { text: `Top ${D.forest} concepts: ${effect} with its 95% interval` }), forest(rows, names, { axis: "0" }));
    // table
    root.append(el("h2", { text: "All tested concepts" }));
    const hide = new Set(["size_a", "size_b", "log_odds_low", "log_odds_high", "test", "n_pairs"]);
    const cols = ["feature", "label", "side", ...Object.keys(t).filter((c) => !["feature", "label", "side"].includes(c) && !hide.has(c))];
    const names2 = { n_a: "n " + clip(names[0], 14), n_b: "n " + clip(names[1], 14), freq_a: "share " + clip(names[0], 14), freq_b: "share " + clip(names[1], 14), mean_a: "mean " + clip(names[0], 14), mean_b: "mean " + clip(names[1], 14), only_a: "only " + clip(names[0], 14), only_b: "only " + clip(names[1], 14), ci_low: "95% low", ci_high: "95% high", relative_risk: "rel. risk" };
    const f = filters([
      { id: "filter-label", kind: "search", label: "filter by label text" },
      { id: "filter-q", kind: "select", label: "q", options: Q_OPTIONS },
      { id: "filter-side", kind: "select", label: "side", options: [["", "both"], ["a", "more in " + names[0]], ["b", "more in " + names[1]]] },
    ], () => table.apply());
    const labels = t.label.map((s) => (s || "").toLowerCase());
    const table = dataTable(cols, t, {
      id: "concepts", what: "concepts", names: names2,
      filter: (i) => {
        const text = f.inputs["filter-label"].value.trim().toLowerCase();
        const q = parseFloat(f.inputs["filter-q"].value);
        const side = f.inputs["filter-side"].value;
        if (text && !labels[i].includes(text) && String(t.feature[i]) !== text) return false;
        if (!isNaN(q) && !(t.q[i] < q)) return false;
        if (side === "a" && !(t.diff[i] > 0)) return false;
        if (side === "b" && !(t.diff[i] < 0)) return false;
        return true;
      },
      rowClass: (i) => (t.q[i] < m.alpha ? "sig" : ""),
      href: (i) => href(t.feature[i]),
    });
    root.append(f.node, table.node);
    // panels
    root.append(el("h2", { text: `The top ${D.panels.length} concepts up close` }));
    for (const p of D.panels) root.append(diffPanel(p, names, href));
    window.__report = { table };
  }
  function diffPanel(p, names, href) {
    const r = p.row, scale = scaleOf(p.hist);
    const facts = el("div", { class: "facts" });
    if (r.freq_a !== undefined) {
      facts.append(el("span", {}, el("span", { class: "side-a", text: names[0] }), ` ${num(r.n_a, "n_a")} docs (${pct(r.freq_a)})`),
        el("span", {}, el("span", { class: "side-b", text: names[1] }), ` ${num(r.n_b, "n_b")} docs (${pct(r.freq_b)})`));
    } else {
      facts.append(el("span", {}, el("span", { class: "side-a", text: names[0] }), ` mean ${num(r.mean_a)}`),
        el("span", {}, el("span", { class: "side-b", text: names[1] }), ` mean ${num(r.mean_b)}`));
    }
    facts.append(el("span", {}, "diff ", el("b", { text: `${num(r.diff)} [${num(r.ci_low)}, ${num(r.ci_high)}]` })),
      el("span", {}, "p ", el("b", { text: num(r.p, "p") }), " · q ", el("b", { text: num(r.q, "q") })));
    const quant = el("div", {}, ...p.quantiles.map((ex) => example(ex, scale, ex.side, `p${Math.round(100 * ex.q)}` + (names[ex.side] === ex.c ? "" : ` · ${names[ex.side]}`))));
    quant.className = "quantiles";
    return el("section", { class: "panel", id: "f" + p.feature, "data-feature": String(p.feature) },
      el("h3", { text: `#${p.feature} ${labelOf(p)}` }), labelLine(p), facts,
      el("div", { class: "grid2" },
        el("div", {}, el("h4", { text: "Activation in each corpus (share of its documents)" }), histogram(p.hist, names)),
        el("div", {}, el("h4", { text: "Co-occurs with" }), cooc(p.cooc, href))),
      el("h4", { text: "Top examples" }),
      el("div", { class: "grid2" }, ...p.top.map((side, i) => el("div", { class: "top-" + i }, el("div", { class: i === 0 ? "side-a" : "side-b", text: names[i] }),
        ...(side.length ? side.map((ex) => example(ex, scale, i)) : [el("p", { class: "note", text: "not active here" })])))),
      el("h4", { text: "Across the activation range (quantiles of the documents where it is active)" }), quant,
      commands(p.commands));
  }

  // ---- feature pages -----------------------------------------------------------------------------
  // a feature's page beside this one: a link only for a feature number, never other text
  const pageOf = (f) => (Number.isInteger(f) && f >= 0 ? `feature-${f}.html` : null);
  function renderFeature() {
    const m = D.meta, scale = scaleOf(D.hist);
    const linked = new Set(D.linked || []);
    const href = (f) => (linked.has(f) ? pageOf(f) : null);
    if (D.linked) root.append(el("p", {}, el("a", { href: "index.html", text: "← all features" })));
    root.append(el("h1", { text: `Feature ${D.feature}: ${labelOf(D)}` }), labelLine(D),
      el("div", { class: "facts" }, el("span", {}, "encoder ", el("b", { text: m.encoder })),
        m.corpus ? el("span", {}, "corpus ", el("b", { text: m.corpus })) : null,
        el("span", { id: "density" }, "active in ", el("b", { text: `${m.n_docs.toLocaleString("en")} of ${m.n_encoded.toLocaleString("en")}` }), ` documents (${pct(m.density)})`)),
      el("p", { class: "note", text: shadingNote(m.shading) }),
      el("div", { class: "grid2" },
        el("div", {}, el("h4", { text: "Pooled activation (documents where active)" }), histogram(D.hist, [m.corpus || "all documents"])),
        el("div", {}, el("h4", { text: "Promotes (through the unembedding)" }), chips(D.promoted, "up"),
          el("h4", { text: "Suppresses" }), chips(D.suppressed, "down"),
          el("h4", { text: "Co-occurs with" }), cooc(D.cooc, href))),
      el("h4", { text: "Top examples" }), el("div", { class: "top-0" }, ...D.top[0].map((ex) => example(ex, scale, 0))),
      el("h4", { text: "Across the activation range" }),
      el("div", { class: "quantiles" }, ...D.quantiles.map((ex) => example(ex, scale, 0, `p${Math.round(100 * ex.q)}`))),
      commands(D.commands));
  }
  function chips(list, kind) {
    if (!list || !list.length) return el("p", { class: "note", text: "not available (needs the reader's unembedding)" });
    return el("div", { class: "chips " + kind }, ...list.map((tok) => el("span", { class: "chip " + kind, title: JSON.stringify(tok), text: tok.trim() ? tok : JSON.stringify(tok) })));
  }
  function renderIndex() {
    const m = D.meta, t = D.table;
    root.append(el("h1", { text: `Features of ${m.encoder}` }),
      el("p", { class: "facts", text: `${t.feature.length.toLocaleString("en")} feature pages · ${m.n_encoded.toLocaleString("en")} documents${m.corpus ? " of " + m.corpus : ""}` }));
    const labels = t.label.map((s) => (s || "").toLowerCase());
    const f = filters([{ id: "filter-label", kind: "search", label: "filter by label text" }], () => table.apply());
    const table = dataTable(["feature", "label", "label_score", "label_source", "n_docs", "density"], t, {
      id: "features", what: "features", names: { label_score: "score", label_source: "source", n_docs: "documents" },
      filter: (i) => { const q = f.inputs["filter-label"].value.trim().toLowerCase(); return !q || labels[i].includes(q) || String(t.feature[i]) === q; },
      href: (i) => pageOf(t.feature[i]),
    });
    root.append(f.node, table.node);
    window.__report = { table };
  }

  // ---- preferences ---------------------------------------------------------------------------------
  function renderPrefs() {
    const m = D.meta, t = D.table;
    root.append(el("h1", { text: `Preferences in ${m.pairs}` }),
      el("div", { class: "facts" }, el("span", {}, "encoder ", el("b", { text: m.encoder })),
        el("span", { text: `${(m.n_pairs || 0).toLocaleString("en")} pairs (${m.n_ties || 0} ties set aside)` }),
        el("span", {}, "measure ", el("b", { text: m.measure }), " · controls ", el("b", { text: (m.controls || []).join(", ") || "none" }))),
      el("p", { id: "headline" }, el("b", { text: String(m.n_concepts_tested) }), " concepts tested; ", el("b", { text: String(m.n_significant) }), ` at q < ${m.alpha}.`),
      el("p", { class: "note", text: shadingNote(m.shading) }));
    if (m.weak) root.append(el("p", { class: "warning", id: "weak", text: m.weak }));
    root.append(el("h2", { text: m.folds_by === "pair" ? "Held-out AUC (5-fold by pair: fewer than 5 distinct prompts), 95% interval" : "Held-out AUC (5-fold, pairs sharing a prompt kept together), 95% interval" }));
    const auc = el("table", { class: "data", id: "auc" }, el("thead", {}, el("tr", {}, el("th", { class: "text", text: "model" }), el("th", { text: "AUC" }), el("th", { text: "95% low" }), el("th", { text: "95% high" }), el("th", { text: "share of dense gain" }))));
    const tb = el("tbody");
    for (const r of D.metrics) tb.append(el("tr", {}, el("td", { class: "text", text: r.model }), el("td", { text: num(r.auc) }), el("td", { text: num(r.auc_low) }), el("td", { text: num(r.auc_high) }), el("td", { text: num(r.share_of_dense_gain) })));
    auc.append(tb);
    root.append(auc);
    const panelSet = new Set(D.panels.map((p) => p.feature));
    const href = (f) => (panelSet.has(f) ? "#f" + f : null);
    const rows = [];
    for (let i = 0; i < D.forest; i++) if (t.coef_low && t.coef_low[i] !== null) rows.push({ label: `#${t.feature[i]} ${t.label[i] || "(unlabelled)"}`, est: t.coef[i], lo: t.coef_low[i], hi: t.coef_high[i], side: t.coef[i] >= 0 ? 0 : 1, href: href(t.feature[i]) });
    root.append(el("h2", { text: "Coefficients (log odds of preference per unit difference, length-controlled, 95% interval)" }), forest(rows, ["rewarded", "punished"], { axis: "0", ends: ["rewarded →", "← punished"] }));
    root.append(el("h2", { text: "All tested concepts" }));
    const labels = t.label.map((s) => (s || "").toLowerCase());
    const f = filters([
      { id: "filter-label", kind: "search", label: "filter by label text" },
      { id: "filter-q", kind: "select", label: "q", options: Q_OPTIONS },
      { id: "filter-side", kind: "select", label: "effect", options: [["", "all"], ["rewarded", "rewarded"], ["punished", "punished"], ["n.s.", "n.s. (q ≥ " + m.alpha + ")"]] },
    ], () => table.apply());
    const cols = ["feature", "label", "effect", "coef", "coef_low", "coef_high", "win_rate_delta", "prevalence", "q", "p", "odds_ratio", "n_differ"].filter((c) => c in t);
    const table = dataTable(cols, t, {
      id: "concepts", what: "concepts", names: { win_rate_delta: "Δwin-rate", coef_low: "95% low", coef_high: "95% high", odds_ratio: "odds ratio", n_differ: "pairs differing" },
      filter: (i) => {
        const text = f.inputs["filter-label"].value.trim().toLowerCase();
        const q = parseFloat(f.inputs["filter-q"].value);
        const side = f.inputs["filter-side"].value;
        if (text && !labels[i].includes(text) && String(t.feature[i]) !== text) return false;
        if (!isNaN(q) && !(t.q[i] < q)) return false;
        if (side && t.effect && t.effect[i] !== side) return false;
        return true;
      },
      rowClass: (i) => (t.q[i] < m.alpha ? "sig" : ""),
      href: (i) => href(t.feature[i]),
    });
    root.append(f.node, table.node);
    root.append(el("h2", { text: `The top ${D.panels.length} concepts with example pairs` }));
    for (const p of D.panels) {
      const r = p.row;
      const scale = Math.max(1e-9, ...p.pairs.flatMap((x) => [x.preferred.v, x.rejected.v]));
      const pairs = p.pairs.map((x) => el("div", { class: "pair", "data-pair": String(x.pair_id) },
        el("div", { class: "prompt", text: `pair ${x.pair_id} · the concept is in the ${x.concept_in} response · prompt: ${clip(x.prompt, 300)}`, style: "grid-column: 1 / span 2" }),
        el("div", { class: "preferred" }, el("h5", { class: "won", text: "preferred" }), example(x.preferred, scale, 1)),
        el("div", { class: "rejected" }, el("h5", { class: "lost", text: "rejected" }), example(x.rejected, scale, 0))));
      root.append(el("section", { class: "panel", id: "f" + p.feature, "data-feature": String(p.feature) },
        el("h3", { text: `#${p.feature} ${labelOf(p)}` }), labelLine(p),
        el("div", { class: "facts" }, el("span", {}, "effect ", el("b", { text: r.effect })),
          el("span", {}, "coef ", el("b", { text: `${num(r.coef)} [${num(r.coef_low)}, ${num(r.coef_high)}]` })),
          el("span", {}, "Δwin-rate ", el("b", { text: num(r.win_rate_delta) })),
          el("span", {}, "prevalence ", el("b", { text: pct(r.prevalence) })),
          el("span", {}, "q ", el("b", { text: num(r.q, "q") }))),
        ...(pairs.length ? pairs : [el("p", { class: "note", text: "no pair where only one response has it" })])));
    }
    window.__report = { table };
  }

  // ---- probe: what in the text predicts a column ----------------------------------------------------
  const GROUP_COLORS = { concepts: COLORS[0], curve: COLORS[0], dense: COLORS[1], union: "#8250df", other: "#59636e" };
  const VERDICTS = { holds: "holds on the held-out half", contradicted: "contradicted on the held-out half", open: "not confirmed on the held-out half" };
  const given = (v) => v !== null && v !== undefined && Number.isFinite(v);
  const score3 = (v) => (given(v) ? v.toFixed(3) : "–");
  const ratio = (v) => (!given(v) ? "–" : v >= 1e4 || v < 1e-3 ? v.toExponential(1).replace("e+", "e") : v >= 100 ? v.toFixed(0) : v.toPrecision(3));
  const share = (v) => (given(v) ? Math.round(100 * v) + "%" : "–");
  const pctOr = (v) => (given(v) ? pct(v) : "–");
  const interval = (r) => `${score3(r.score)} [${score3(r.low)}, ${score3(r.high)}]`;
  function ticks(lo, hi, n) {
    const span = hi - lo || 1, mag = Math.pow(10, Math.floor(Math.log10(span / n)));
    const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => span / s <= n) || 10 * mag;
    const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9) + (String(step / mag).includes(".") ? 1 : 0));
    const out = [];
    for (let i = Math.ceil(lo / step); i * step <= hi + 1e-9 * span; i++) out.push([i * step, (i * step).toFixed(digits)]);
    return out;
  }
  function padded(values, share) {
    let lo = Math.min(...values), hi = Math.max(...values);
    const pad = share * (hi - lo || Math.abs(hi) || 1);
    return [lo - pad, hi + pad];
  }
  function scoreChart(rows, m) {
    // each probe's held-out score: a bar from chance, the 95% interval, the value at the right
    const W = 1100, L = 300, R = 190, T = 22, RH = 28, B = 22;
    const H = T + rows.length * RH + B;
    const [lo, hi] = padded([m.chance, ...rows.flatMap((r) => [r.low, r.high, r.score]).filter(given)], 0.04);
    const x = (v) => L + (W - L - R) * (v - lo) / (hi - lo);
    const s = sv("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", class: "scores", id: "score-chart", role: "img" });
    for (const [t, label] of ticks(lo, hi, 6)) {
      s.append(sv("line", { x1: x(t), x2: x(t), y1: T - 4, y2: H - B, class: "grid" }),
        sv("text", { x: x(t), y: H - 6, "text-anchor": "middle", class: "tick" }, label));
    }
    s.append(sv("line", { x1: x(m.chance), x2: x(m.chance), y1: T - 8, y2: H - B, class: "zero" }),
      sv("text", { x: x(m.chance), y: 11, "text-anchor": "middle" }, `chance ${num(m.chance)}`),
      sv("text", { x: W - R + 10, y: 11, "text-anchor": "start", class: "tick" }, `${m.metric} [95% interval]`));
    rows.forEach((r, i) => {
      const y = T + i * RH + RH / 2, c = GROUP_COLORS[r.group] || GROUP_COLORS.other;
      const g = sv("g", { class: "srow", "data-group": r.group });
      g.append(sv("text", { x: L - 10, y: y + 4, "text-anchor": "end", class: r.group === "concepts" ? "strong" : "" }, clip(r.probe, 48)));
      if (given(r.score)) {
        const a = x(Math.min(m.chance, r.score)), b = x(Math.max(m.chance, r.score));
        g.append(sv("rect", { x: a, y: y - 7, width: Math.max(1, b - a), height: 14, fill: c, "fill-opacity": 0.16 }));
      }
      if (given(r.low) && given(r.high)) {
        g.append(sv("line", { x1: x(r.low), x2: x(r.high), y1: y, y2: y, stroke: c, "stroke-width": 2 }));
        for (const v of [r.low, r.high]) g.append(sv("line", { x1: x(v), x2: x(v), y1: y - 5, y2: y + 5, stroke: c, "stroke-width": 2 }));
      }
      if (given(r.score)) {
        const dot = sv("circle", { cx: x(r.score), cy: y, r: 5, fill: c });
        dot.append(sv("title", {}, `${r.probe}: ${m.metric} ${interval(r)}`));
        g.append(dot);
      }
      g.append(sv("text", { x: W - R + 10, y: y + 4, "text-anchor": "start", class: "value" }, interval(r)));
      s.append(g);
    });
    return s;
  }
  function curveChart(curve, lines, m) {
    // the concept probe's score over k (log2 axis) with its 95% band; dense probes as lines
    const W = 1100, H = 320, L = 58, R = 300, T = 22, B = 44;
    const lk = (k) => Math.log2(k);
    const k0 = lk(curve[0].k), k1 = lk(curve[curve.length - 1].k);
    const x = (k) => L + (W - L - R) * (k1 > k0 ? (lk(k) - k0) / (k1 - k0) : 0.5);
    const [lo, hi] = padded([...curve.flatMap((r) => [r.low, r.high, r.score]), ...lines.map((l) => l.score)].filter(given), 0.08);
    const y = (v) => T + (H - T - B) * (hi - v) / (hi - lo);
    const s = sv("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", class: "curve", id: "curve-chart", role: "img" });
    const chosen = Object.values(m.k_of_fold || {});
    if (chosen.length) {
      // the k each fold's inner cross-validation chose
      const a = x(Math.min(...chosen)), b = x(Math.max(...chosen));
      const band = sv("rect", { x: a - 6, y: T, width: b - a + 12, height: H - T - B, class: "chosen-k" });
      band.append(sv("title", {}, `k chosen by inner cross-validation in each fold: ${chosen.join(", ")}`));
      s.append(band, sv("text", { x: (a + b) / 2, y: T - 6, "text-anchor": "middle", class: "tick" }, "k chosen per fold"));
    }
    for (const [t, label] of ticks(lo, hi, 5)) {
      s.append(sv("line", { x1: L, x2: W - R, y1: y(t), y2: y(t), class: "grid" }),
        sv("text", { x: L - 6, y: y(t) + 4, "text-anchor": "end", class: "tick" }, label));
    }
    for (const r of curve) s.append(sv("text", { x: x(r.k), y: H - B + 16, "text-anchor": "middle", class: "tick" }, String(r.k)));
    s.append(sv("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }), sv("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }),
      sv("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" }, "k: concepts in the probe (log scale)"),
      sv("text", { x: 14, y: (T + H - B) / 2, "text-anchor": "middle", transform: `rotate(-90 14 ${(T + H - B) / 2})` }, `held-out ${m.metric}`));
    const withBand = curve.filter((r) => given(r.low) && given(r.high));
    if (withBand.length) {
      const pts = [...withBand.map((r) => `${x(r.k)},${y(r.high)}`), ...withBand.slice().reverse().map((r) => `${x(r.k)},${y(r.low)}`)];
      s.append(sv("polygon", { points: pts.join(" "), fill: COLORS[0], "fill-opacity": 0.14 }));
    }
    const pts = curve.filter((r) => given(r.score));
    s.append(sv("polyline", { points: pts.map((r) => `${x(r.k)},${y(r.score)}`).join(" "), fill: "none", stroke: COLORS[0], "stroke-width": 2 }));
    for (const r of pts) {
      const dot = sv("circle", { cx: x(r.k), cy: y(r.score), r: 4, fill: COLORS[0], class: "kpoint" });
      dot.append(sv("title", {}, `k = ${r.k}: ${m.metric} ${interval(r)}`));
      s.append(dot);
    }
    // reference lines, their labels in the right margin kept apart
    const refs = lines.filter((l) => given(l.score) && l.score >= lo && l.score <= hi).map((l) => ({ ...l, ly: y(l.score) })).sort((a, b) => a.ly - b.ly);
    if (lo <= m.chance && m.chance <= hi) refs.push({ probe: "chance", group: "other", score: m.chance, ly: y(m.chance), chance: true });
    refs.sort((a, b) => a.ly - b.ly);
    let last = -Infinity;
    for (const l of refs) {
      const c = GROUP_COLORS[l.group] || GROUP_COLORS.other, ty = Math.max(l.ly + 4, last + 14);
      last = ty;
      const g = sv("g", { class: "refline", "data-group": l.group });
      g.append(sv("line", { x1: L, x2: W - R, y1: l.ly, y2: l.ly, stroke: c, "stroke-width": 1.5, "stroke-dasharray": l.chance ? "2 3" : "6 4" }),
        sv("line", { x1: W - R, x2: W - R + 8, y1: l.ly, y2: ty - 4, stroke: c }),
        sv("text", { x: W - R + 10, y: ty, "text-anchor": "start", fill: c }, `${clip(l.probe, 38)} ${score3(l.score)}`));
      s.append(g);
    }
    return s;
  }
  function miniInterval(est, low, high, dom, log) {
    // one hypothesis's interval on the axis shared by the table (log scale for odds ratios)
    const W = 130, H = 14, f = log ? Math.log : (v) => v;
    const cut = (v) => Math.min(dom[1], Math.max(dom[0], v));
    const x = (v) => 4 + (W - 8) * (f(cut(v)) - f(dom[0])) / (f(dom[1]) - f(dom[0]));
    const s = sv("svg", { width: W, height: H, class: "mini", viewBox: `0 0 ${W} ${H}` });
    const none = log ? 1 : 0;
    s.append(sv("line", { x1: x(none), x2: x(none), y1: 0, y2: H, class: "zero" }));
    if (given(low) && given(high)) s.append(sv("line", { x1: x(low), x2: x(high), y1: H / 2, y2: H / 2, class: "ci" }));
    if (given(est)) s.append(sv("circle", { cx: x(est), cy: H / 2, r: 3.5, class: "est" }));
    return s;
  }
  function effectText(r, categorical) {
    return categorical ? `${ratio(r.odds_ratio)} [${ratio(r.low)}, ${ratio(r.high)}]` : `${num(r.coef)} [${num(r.low)}, ${num(r.high)}]`;
  }
  function hypothesesTable(t, m, categorical, panelSet) {
    const n = t.feature.length;
    const est = categorical ? t.odds_ratio : t.coef;
    const ends = [...t.low, ...t.high, ...est].filter(given);
    const dom = categorical
      ? [Math.max(1 / 16, Math.min(0.5, ...ends)), Math.min(16, Math.max(2, ...ends))]
      : padded([0, ...ends], 0.05);
    const heads = ["", "concept", categorical ? "marks" : "points to", categorical ? "odds ratio per SD [95%]" : "coefficient per SD [95%]", "", "q",
      categorical ? "active in marked class / rest" : `mean ${m.target} where active / not`, "folds selected", "verdict"];
    const table = el("table", { class: "data hypotheses", id: "hypotheses" },
      el("thead", {}, el("tr", {}, ...heads.map((h, i) => el("th", { class: i === 1 || i === 2 || i === 8 ? "text" : "", text: h })))));
    const body = el("tbody");
    for (let i = 0; i < n; i++) {
      const f = t.feature[i], name = `#${f} ${t.name[i] || "(unlabelled)"}`;
      const concept = el("td", { class: "text concept" }, panelSet.has(f) ? el("a", { href: "#f" + f, text: name }) : name);
      const snippets = (t.examples && t.examples[i]) || [];
      if (!panelSet.has(f) && snippets.length) concept.append(el("div", { class: "snippet", title: snippets.join("\n"), text: snippets.join("  ·  ") }));
      const r = { odds_ratio: t.odds_ratio && t.odds_ratio[i], coef: t.coef && t.coef[i], low: t.low[i], high: t.high[i] };
      const active = categorical ? `${pctOr(t.share_in[i])} / ${pctOr(t.share_rest[i])}` : `${num(t.mean_with[i])} / ${num(t.mean_without[i])}`;
      const verdict = t.verdict[i];
      body.append(el("tr", { class: verdict, "data-feature": String(f) }, el("td", { text: String(i + 1) }), concept,
        el("td", { class: "text", text: t.marks[i] }), el("td", { text: effectText(r, categorical) }),
        el("td", {}, miniInterval(est[i], t.low[i], t.high[i], dom, categorical)), el("td", { text: num(t.q[i], "q") }),
        el("td", { text: active }), el("td", { text: `${t.folds_selected[i]} / ${m.folds}` }),
        el("td", { class: "text verdict " + verdict, text: verdict === "open" ? "–" : verdict })));
    }
    table.append(body);
    return table;
  }
  function probePanel(p, m, categorical) {
    const r = p.row;
    const scale = Math.max(1e-9, ...p.marked.map((e) => e.v), ...p.other.map((e) => e.v));
    const facts = el("div", { class: "facts" },
      el("span", {}, categorical ? "marks " : "points to ", el("b", { text: categorical ? r.marks : `${r.marks} ${m.target}` })),
      el("span", {}, categorical ? "odds ratio per SD " : "coefficient per SD ", el("b", { text: effectText(r, categorical) })),
      el("span", {}, "q ", el("b", { text: num(r.q, "q") })),
      categorical
        ? el("span", {}, "active in ", el("b", { text: pctOr(r.share_in) }), ` of ${r.marks} documents, ${pctOr(r.share_rest)} of the rest`)
        : el("span", {}, `mean ${m.target} `, el("b", { text: num(r.mean_with) }), ` where active, ${num(r.mean_without)} where not`),
      el("span", { text: `selected in ${r.folds_selected} of ${m.folds} folds` }),
      el("span", { class: "verdict " + p.verdict, text: VERDICTS[p.verdict] }));
    const others = Object.keys(m.classes || {}).filter((c) => c !== r.marks);
    const of = (k, total) => `active in ${k.toLocaleString("en")} of ${given(total) ? total.toLocaleString("en") : "?"} documents`;
    const valueOf = (ex) => `${m.target} ${typeof ex.y === "number" ? num(ex.y) : ex.y}`;
    const none = (what) => el("p", { class: "note", text: `not active in ${what}` });
    const marked = el("div", { class: "marked" },
      el("h4", { text: categorical ? `Where it fires in ${r.marks} (${of(p.n_marked, m.classes[r.marks])})` : `Where it fires most (${of(p.n_marked, m.n_docs)})` }),
      ...(p.marked.length ? p.marked.map((ex) => example(ex, scale, 0, categorical ? null : valueOf(ex))) : [none(categorical ? r.marks : "any document")]));
    const body = categorical
      ? el("div", { class: "grid2" }, marked, el("div", { class: "other" },
        el("h4", { text: `…and in ${others.length === 1 ? others[0] : "the other classes"} (${of(p.n_other, m.n_docs - (m.classes[r.marks] || 0))})` }),
        ...(p.other.length ? p.other.map((ex) => example(ex, scale, 1, String(ex.y))) : [none("the other classes")])))
      : marked;
    return el("section", { class: "panel " + p.verdict, id: "f" + p.feature, "data-feature": String(p.feature) },
      el("h3", { text: `#${p.feature} ${labelOf(p)}` }), labelLine(p), facts, body);
  }
  function probeHeader(m) {
    const aside = m.set_aside || {};
    const small = Object.entries(aside.small_classes || {});
    const nAside = (aside.missing || 0) + small.reduce((a, [, n]) => a + n, 0);
    const classes = m.classes
      ? el("span", { id: "classes" }, `${Object.keys(m.classes).length} classes: `, ...Object.entries(m.classes).flatMap(([c, n], i) => [i ? " · " : "", el("b", { text: c }), ` ${n.toLocaleString("en")}`]))
      : el("span", { id: "classes" }, "a number", m.target_range ? `: ${num(m.target_range[0])} to ${num(m.target_range[2])}, median ${num(m.target_range[1])}` : "");
    const bits = [
      el("span", {}, "target ", el("b", { text: m.target }), ` (${m.kind})`), classes,
      el("span", { id: "n-docs" }, el("b", { text: m.n_docs.toLocaleString("en") }), " documents"),
      nAside ? el("span", { text: `${nAside.toLocaleString("en")} set aside (${[aside.missing ? `${aside.missing} without a value` : "", small.length ? "classes too small: " + small.map(([c, n]) => `${c} ${n}`).join(", ") : ""].filter(Boolean).join("; ")})` }) : null,
      el("span", {}, "encoder ", el("b", { text: m.encoder }), ` · ${m.n_concepts.toLocaleString("en")} concepts · measure ${m.measure}`),
      el("span", { text: `${m.folds}-fold cross-fitting · seed ${m.seed}` }),
      m.corpus ? el("span", {}, "corpus ", el("b", { text: m.corpus })) : null, ...whereFact(m),
    ];
    return el("div", { class: "facts" }, ...bits);
  }
  function probeHeadline(m, rows) {
    const mine = rows.find((r) => r.group === "concepts");
    const dense = rows.find((r) => r.probe === m.dense_probe);
    const p = el("p", { id: "headline" });
    if (!mine) return p;
    p.append("Concepts predict ", el("b", { text: m.target }), ` with held-out ${m.metric} `, el("b", { text: score3(mine.score) }),
      ` [${score3(mine.low)}, ${score3(mine.high)}] (chance ${num(m.chance)}; about ${mine.inputs} concepts)`);
    if (dense) {
      p.append(`; the ${dense.probe} scores `, el("b", { text: score3(dense.score) }), ` [${score3(dense.low)}, ${score3(dense.high)}]. The concepts recover `,
        el("b", { text: share(mine.share_of_dense_gain) }), ` of its gain over chance (difference ${num(mine.vs_dense)} [${num(mine.vs_low)}, ${num(mine.vs_high)}]).`);
    } else p.append(".");
    return p;
  }
  function scoresTable(rows, m) {
    const heads = ["probe", "inputs", m.metric, "95% interval", "vs dense [95%]", "share of dense gain"];
    const body = el("tbody", {}, ...rows.map((r) => el("tr", { class: "g-" + r.group, "data-group": r.group },
      el("td", { class: "text", text: r.probe }), el("td", { text: given(r.inputs) ? r.inputs.toLocaleString("en") : "–" }),
      el("td", { text: score3(r.score) }), el("td", { text: `${score3(r.low)} – ${score3(r.high)}` }),
      el("td", { text: given(r.vs_dense) ? `${num(r.vs_dense)} [${num(r.vs_low)}, ${num(r.vs_high)}]` : "–" }),
      el("td", { text: share(r.share_of_dense_gain) }))));
    return el("table", { class: "data", id: "scores" }, el("thead", {}, el("tr", {}, ...heads.map((h, i) => el("th", { class: i === 0 ? "text" : "", text: h })))), body);
  }
  function renderProbe() {
    const m = D.meta, rows = D.scores, t = D.hypotheses, categorical = m.kind !== "numeric";
    root.append(el("h1", { text: `What in the text predicts ${m.target}?` }), probeHeader(m), probeHeadline(m, rows));
    const notes = [...(m.notes || [])];
    if (!m.dense_probe && !notes.length) notes.push("No dense probe ran (--dense none), so nothing shows what the text as a whole predicts: run without --dense none for the sentence embedder, and encode with --keep-dense for the reader's own vectors.");
    for (const line of notes) root.append(el("p", { class: "warning probe-note", text: line }));
    // scores
    const main = rows.filter((r) => r.group !== "curve"), curve = rows.filter((r) => r.group === "curve").sort((a, b) => a.k - b.k);
    root.append(el("h2", { text: `Held-out ${m.metric}: every document scored by a model that never saw it` }),
      el("p", { class: "note", text: `${m.folds}-fold cross-fitting, 95% bootstrap intervals; bars start at chance (${num(m.chance)}). The concept probe keeps the k concepts that best separate the target on the training folds, k chosen by inner cross-validation.` }),
      scoreChart(main, m));
    const gains = main.filter((r) => r.probe !== m.dense_probe && given(r.share_of_dense_gain));
    if (gains.length) {
      root.append(el("p", { id: "gain" }, `Share of the ${m.dense_probe}'s gain over chance: `,
        ...gains.flatMap((r, i) => [i ? " · " : "", r.probe + " ", el("b", { text: share(r.share_of_dense_gain) })]), "."));
    }
    if (curve.length) {
      root.append(el("h3", { class: "chart-title", text: `The concept probe over k (${curve.length} values of k)` }),
        curveChart(curve, main.filter((r) => r.group === "dense" || r.group === "union"), m));
    }
    root.append(el("details", { class: "scores-table" }, el("summary", { text: "All scores as a table" }), scoresTable(rows, m)));
    // hypotheses
    const n = t.feature ? t.feature.length : 0;
    root.append(el("h2", { text: `Hypotheses: ${n} concepts the probe selects, tested on documents that did not select them` }));
    if (!n) {
      root.append(el("p", { class: "note", id: "no-hypotheses", text: "The discovery half selected no concept." }));
    } else {
      const holds = t.verdict.filter((v) => v === "holds").length;
      root.append(el("p", { id: "hypotheses-headline" }, el("b", { text: String(holds) }), ` of ${n} hold on the held-out half (q < ${m.alpha}, interval above ${categorical ? "1" : "0"}).`),
        el("p", { class: "note", text: (categorical
          ? "Chosen on half the documents; on the other half all are refitted together: the odds of the class each marks per standard deviation of the concept, given the others, with its 95% interval (the small chart, log scale; the dashed line is 1)."
          : "Chosen on half the documents; on the other half all are refitted together: the change in the target per standard deviation of the concept toward what it points to, given the others, with its 95% interval (the small chart; the dashed line is 0).")
          + " q: one-sided p toward the mark, Benjamini-Hochberg. Tinted rows hold; grey rows are contradicted (the held-out half points the other way). A concept that only repeats another is not significant given it: read such pairs together." }),
        hypothesesTable(t, m, categorical, new Set(D.panels.map((p) => p.feature))));
    }
    if (D.panels.length) {
      root.append(el("h2", { text: `The first ${D.panels.length} hypotheses with example documents` }),
        el("p", { class: "note", text: shadingNote(m.shading) + (categorical ? " Left: the documents of the class the concept marks where it fires most; right: where it fires in the other classes." : " The documents where it fires most, each with its target value.") }));
      for (const p of D.panels) root.append(probePanel(p, m, categorical));
    }
  }

  root.replaceChildren();
  ({ diff: renderDiff, themes: renderThemes, feature: renderFeature, index: renderIndex, prefs: renderPrefs, probe: renderProbe })[D.kind]();
  document.body.dataset.readyMs = performance.now().toFixed(1);
  document.body.dataset.ready = "1";
  if (location.hash.length > 1) { const target = document.getElementById(location.hash.slice(1)); if (target) target.scrollIntoView(); }
})();
