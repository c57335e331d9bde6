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

  root.replaceChildren();
  ({ diff: renderDiff, themes: renderThemes, feature: renderFeature, index: renderIndex, prefs: renderPrefs })[D.kind]();
  document.body.dataset.readyMs = performance.now().toFixed(1);
  document.body.dataset.ready = "1";
  if (location.hash.length > 1) { const target = document.getElementById(location.hash.slice(1)); if (target) target.scrollIntoView(); }
})();
