"use strict";
// Draws a saeembed map from the JSON in #map-data: one marker per distinct position (its area
// grows with the documents there, the number written inside big ones), cluster names at their
// anchors, a legend and hover tooltips. Text is only ever set through textContent.
(() => {
  const t0 = performance.now();
  const data = JSON.parse(document.getElementById("map-data").textContent);
  const nSpots = data.spot_x.length;
  const start = data.spot_start;  // documents of position s: start[s] .. start[s + 1] - 1
  const canvas = document.getElementById("canvas");
  const ctx = canvas.getContext("2d");
  const tooltip = document.getElementById("tooltip");
  const ring = document.getElementById("ring");
  const legend = document.getElementById("legend");
  const select = document.getElementById("color-mode");

  const PAD = 28;        // CSS pixels kept free around the points
  const CELL = 8;        // hover grid cell size, CSS pixels
  const HOVER_PX = 6;    // hover reach beyond a small marker
  // radius of a one-document marker: smaller when many are drawn; area grows with the count
  const BASE = nSpots > 10000 ? 2.5 : nSpots > 2000 ? 3.5 : 5;
  // Area is proportional to the documents up to AREA_MAX of them, then grows with their
  // logarithm to at most MAX_R pixels; the count is written inside markers from COUNT_R.
  const AREA_MAX = 64, MAX_R = 64, COUNT_R = 10;
  const GREY = "#9a9a9a", STEPS = 64, LISTED = 3, LISTED_IDS = 20;
  const LABEL_FONT = "600 13px system-ui, sans-serif", LABEL_LINE = 15, LABEL_WIDTH = 190;
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#637939", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
    "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5", "#393b79"];
  const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

  const px = new Float64Array(nSpots), py = new Float64Array(nSpots);  // CSS pixels
  let grid = null, reach = 1, labels = [], mode = "cluster", focus = null;
  let drawnSpots = 0, drawnDocs = 0;

  // --- positions and their documents ------------------------------------------------------
  const count = (s) => start[s + 1] - start[s];
  const radius = (s) => {
    const k = count(s);
    return k <= AREA_MAX ? BASE * Math.sqrt(k) : Math.min(MAX_R, BASE * Math.sqrt(AREA_MAX) + 4 * Math.log2(k / AREA_MAX));
  };
  const mix = [];  // per position: [[cluster, documents], ...], most documents first
  for (let s = 0; s < nSpots; s++) {
    const tally = new Map();
    for (let d = start[s]; d < start[s + 1]; d++) tally.set(data.cluster[d], (tally.get(data.cluster[d]) || 0) + 1);
    mix.push([...tally].sort((a, b) => b[1] - a[1] || a[0] - b[0]));
  }
  const main = (s) => mix[s][0][0];
  const spotAt = new Map();  // "x,y" -> position, to find the marker under a cluster's name
  for (let s = 0; s < nSpots; s++) spotAt.set(`${data.spot_x[s]},${data.spot_y[s]}`, s);

  // --- colours ----------------------------------------------------------------------------
  const clusters = new Map(data.clusters.map((c) => [c.id, c]));
  const clusterColor = new Map([[-1, GREY]]);
  data.clusters.map((c) => c.id).filter((c) => c !== -1).forEach((c, i) => {
    clusterColor.set(c, i < PALETTE.length ? PALETTE[i] : `hsl(${(i * 137.508) % 360},60%,50%)`);
  });
  const clusterName = (c) => (clusters.has(c) ? clusters.get(c).name : c === -1 ? "outliers" : `cluster ${c}`);
  const isNumber = (v) => v !== null && Number.isFinite(v);

  function ramp(t) {  // t in [0, 1] -> viridis-like colour
    const s = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
    const i = Math.min(Math.floor(s), VIRIDIS.length - 2), f = s - i;
    return `rgb(${VIRIDIS[i].map((v, k) => Math.round(v + f * (VIRIDIS[i + 1][k] - v)))})`;
  }

  function extent(values) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) if (isNumber(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    return lo <= hi ? [lo, hi] : [0, 0];
  }

  // a value column per position: the mean of its documents' finite values (null if none)
  const spotValues = new Map();
  function valuesOf(name) {
    if (!spotValues.has(name)) {
      const column = data.columns[name], out = new Array(nSpots).fill(null);
      for (let s = 0; s < nSpots; s++) {
        let sum = 0, k = 0;
        for (let d = start[s]; d < start[s + 1]; d++) if (isNumber(column[d])) { sum += column[d]; k++; }
        if (k) out[s] = sum / k;
      }
      spotValues.set(name, out);
    }
    return spotValues.get(name);
  }

  function colorOf(s, values, lo, hi) {
    if (!values) return clusterColor.get(main(s)) || GREY;
    const v = values[s];
    return !isNumber(v) ? GREY : ramp(hi > lo ? Math.round(((v - lo) / (hi - lo)) * STEPS) / STEPS : 0);
  }

  // --- layout, hover index and name placement ----------------------------------------------
  let toX = (v) => v, toY = (v) => v;
  function layout() {
    const { width, height } = canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const [x0, x1] = extent(data.spot_x), [y0, y1] = extent(data.spot_y);
    let biggest = 0;
    for (let s = 0; s < nSpots; s++) if (isNumber(data.spot_x[s]) && isNumber(data.spot_y[s])) biggest = Math.max(biggest, radius(s));
    const pad = Math.max(PAD, biggest + 4);  // a big marker at the edge stays whole
    const scale = Math.max(0, Math.min((width - 2 * pad) / (x1 - x0 || 1), (height - 2 * pad) / (y1 - y0 || 1)));
    const ox = (width - (x1 - x0) * scale) / 2, oy = (height - (y1 - y0) * scale) / 2;
    toX = (v) => ox + (v - x0) * scale;
    toY = (v) => height - oy - (v - y0) * scale;  // y grows upwards
    for (let s = 0; s < nSpots; s++) {
      const ok = isNumber(data.spot_x[s]) && isNumber(data.spot_y[s]);
      px[s] = ok ? toX(data.spot_x[s]) : NaN;
      py[s] = ok ? toY(data.spot_y[s]) : NaN;
    }
    reach = Math.ceil((Math.max(biggest, HOVER_PX) + 2) / CELL);
    grid = buildGrid(width, height);
    placeLabels(width, height);
  }

  // Counting sort of positions into CELL x CELL buckets: items[start[c]..start[c+1]).
  function buildGrid(width, height) {
    const cols = Math.ceil(width / CELL) + 1, rows = Math.ceil(height / CELL) + 1;
    const cellOf = new Int32Array(nSpots).fill(-1), first = new Int32Array(cols * rows + 1);
    const cell = (x, m) => Math.min(m - 1, Math.max(0, Math.floor(x / CELL)));
    for (let s = 0; s < nSpots; s++) {
      if (Number.isNaN(px[s])) continue;
      cellOf[s] = cell(py[s], rows) * cols + cell(px[s], cols);
      first[cellOf[s] + 1]++;
    }
    for (let c = 0; c < cols * rows; c++) first[c + 1] += first[c];
    const fill = first.slice(0, -1), items = new Int32Array(first[cols * rows]);
    for (let s = 0; s < nSpots; s++) if (cellOf[s] >= 0) items[fill[cellOf[s]]++] = s;
    return { cols, rows, first, items };
  }

  // The marker under the mouse: of those within reach, the smallest (drawn on top), then nearest.
  function nearest(mx, my) {
    const { cols, rows, first, items } = grid;
    const cx = Math.floor(mx / CELL), cy = Math.floor(my / CELL);
    let best = -1, bestR = Infinity, bestD = Infinity;
    for (let gy = Math.max(0, cy - reach); gy <= Math.min(rows - 1, cy + reach); gy++) {
      for (let gx = Math.max(0, cx - reach); gx <= Math.min(cols - 1, cx + reach); gx++) {
        const c = gy * cols + gx;
        for (let k = first[c]; k < first[c + 1]; k++) {
          const s = items[k], r = radius(s), d = Math.hypot(px[s] - mx, py[s] - my);
          if (d > Math.max(r + 2, HOVER_PX)) continue;
          if (r < bestR || (r === bestR && d < bestD)) { best = s; bestR = r; bestD = d; }
        }
      }
    }
    return best;
  }

  // A name in at most two lines of LABEL_WIDTH pixels; what does not fit ends in "…".
  function wrap(text) {
    const words = text.split(/\s+/).filter(Boolean), lines = [];
    const fits = (t) => ctx.measureText(t).width <= LABEL_WIDTH;
    let i = 0;
    while (i < words.length && lines.length < 2) {
      let line = words[i++];
      while (i < words.length && fits(`${line} ${words[i]}`)) line += ` ${words[i++]}`;
      lines.push(line);
    }
    return lines.map((line, k) => {
      const cut = !fits(line) || (k === lines.length - 1 && i < words.length);
      if (!cut) return line;
      while (line.length > 1 && !fits(`${line}…`)) line = line.slice(0, -1);
      return `${line.trimEnd()}…`;
    });
  }

  // Names by their cluster's anchor, biggest cluster first; a name that would overlap one
  // already placed tries the next of a few nearby spots, else is left off (the legend has it).
  function placeLabels(width, height) {
    ctx.font = LABEL_FONT;
    const clamp = (v, lo, hi) => Math.max(lo, Math.min(v, hi));
    const boxes = [];
    labels = [];
    const named = data.clusters.filter((c) => c.id !== -1 && isNumber(c.x) && isNumber(c.y));
    named.sort((a, b) => b.size - a.size || a.id - b.id);
    for (const c of named) {
      const lines = wrap(c.name);
      const w = Math.max(...lines.map((l) => ctx.measureText(l).width)) + 8;
      const h = lines.length * LABEL_LINE + 4, ax = toX(c.x), ay = toY(c.y);
      const spot = spotAt.get(`${c.x},${c.y}`), r = spot === undefined ? BASE : radius(spot);
      const at = (dx, dy) => ({
        x: clamp(ax + dx - w / 2, 2, width - w - 2), y: clamp(ay + dy - h / 2, 2, height - h - 2), w, h,
      });
      // above the anchor's marker (which stays visible), below it, beside it, further out
      const up = r + h / 2 + 2, side = r + w / 2 + 4;
      const tries = [[0, -up], [0, up], [side, 0], [-side, 0], [0, -up - h], [0, up + h], [0, 0]];
      const overlaps = (b) => boxes.some((o) => b.x < o.x + o.w && o.x < b.x + b.w && b.y < o.y + o.h && o.y < b.y + b.h);
      const box = tries.map(([dx, dy]) => at(dx, dy)).find((b) => !overlaps(b));
      if (box) boxes.push(box);
      labels.push({ id: c.id, name: c.name, lines, box: box || at(0, 0), shown: Boolean(box) });
    }
  }

  // --- drawing ----------------------------------------------------------------------------
  function drawStack(s, values, lo, hi, faded) {
    const r = radius(s), parts = values ? [[main(s), 1]] : mix[s], total = count(s);
    ctx.globalAlpha = faded ? 0.15 : 0.85;
    let angle = -Math.PI / 2;
    for (const [c, k] of parts) {  // a position shared by several clusters: one wedge each
      const step = values ? 2 * Math.PI : (2 * Math.PI * k) / total;
      ctx.fillStyle = values ? colorOf(s, values, lo, hi) : clusterColor.get(c) || GREY;
      ctx.beginPath();
      if (parts.length > 1) ctx.moveTo(px[s], py[s]);
      ctx.arc(px[s], py[s], r, angle, angle + step);
      ctx.fill();
      angle += step;
    }
    ctx.globalAlpha = faded ? 0.15 : 1;
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = "#ffffff";
    ctx.beginPath();
    ctx.arc(px[s], py[s], r, 0, 2 * Math.PI);
    ctx.stroke();
    ctx.globalAlpha = 1;
  }

  function haloText(text, x, y, fill, halo, width) {
    ctx.lineWidth = width;
    ctx.lineJoin = "round";
    ctx.strokeStyle = halo;
    ctx.strokeText(text, x, y);
    ctx.fillStyle = fill;
    ctx.fillText(text, x, y);
  }

  // Big markers underneath, outliers under the rest, in a value mode high values on top;
  // kept per colour mode (a legend hover redraws without sorting again).
  const orders = new Map();
  function drawOrder(values) {
    if (!orders.has(mode)) {
      const r = Float64Array.from({ length: nSpots }, (_, s) => radius(s));
      const rank = (s) => (values ? (isNumber(values[s]) ? values[s] : -Infinity) : 0);
      const outlier = (s) => (main(s) === -1 ? 0 : 1);
      const order = [];
      for (let s = 0; s < nSpots; s++) if (isNumber(data.spot_x[s]) && isNumber(data.spot_y[s])) order.push(s);
      order.sort((a, b) => r[b] - r[a] || outlier(a) - outlier(b) || rank(a) - rank(b) || a - b);
      orders.set(mode, order);
    }
    return orders.get(mode);
  }

  function draw() {
    const { width, height } = canvas.getBoundingClientRect();
    ctx.clearRect(0, 0, width, height);
    const values = mode === "cluster" ? null : valuesOf(mode);
    const [lo, hi] = values ? extent(values) : [0, 0];
    const faded = (s) => focus !== null && !mix[s].some(([c]) => c === focus);
    const order = drawOrder(values);
    drawnSpots = order.length;
    drawnDocs = 0;
    for (const s of order) drawnDocs += count(s);
    let k = 0;  // positions of several documents one by one, then single ones batched by colour
    for (; k < order.length && count(order[k]) > 1; k++) drawStack(order[k], values, lo, hi, faded(order[k]));
    const batches = new Map();
    for (const fade of [true, false]) {
      for (let j = k; j < order.length; j++) {
        const s = order[j];
        if (faded(s) !== fade) continue;
        const key = `${fade ? 1 : 0}|${colorOf(s, values, lo, hi)}`;
        if (!batches.has(key)) batches.set(key, []);
        batches.get(key).push(s);
      }
    }
    for (const [key, spots] of batches) {
      ctx.globalAlpha = key[0] === "1" ? 0.15 : 1;
      ctx.fillStyle = key.slice(2);
      ctx.beginPath();
      for (const s of spots) { ctx.moveTo(px[s] + BASE, py[s]); ctx.arc(px[s], py[s], BASE, 0, 2 * Math.PI); }
      ctx.fill();
      if (BASE >= 3.5) { ctx.lineWidth = 0.75; ctx.strokeStyle = "rgba(255,255,255,0.85)"; ctx.stroke(); }
    }
    ctx.globalAlpha = 1;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    for (const s of order) {  // the number of documents inside markers big enough to hold it
      const r = radius(s);
      if (count(s) < 2 || r < COUNT_R || faded(s)) continue;
      ctx.font = `700 ${Math.round(Math.min(14, r * 0.75))}px system-ui, sans-serif`;
      haloText(short(count(s)), px[s], py[s], "#ffffff", "rgba(0,0,0,0.55)", 3);
    }
    ctx.font = LABEL_FONT;
    for (const l of labels) {
      if (!(focus === null ? l.shown : l.id === focus)) continue;
      const x = l.box.x + l.box.w / 2;
      l.lines.forEach((line, i) => {
        haloText(line, x, l.box.y + 2 + LABEL_LINE * (i + 0.5), "#111111", "rgba(255,255,255,0.92)", 4);
      });
    }
  }

  const short = (k) => (k >= 10000 ? `${Math.round(k / 1000)}k` : String(k));
  const plural = (k, word) => `${k.toLocaleString()} ${word}${k === 1 ? "" : "s"}`;

  function caption() {
    const shown = nSpots, docs = start[nSpots];
    const unplaced = docs - drawnDocs;
    let text = `${plural(data.n_docs, "document")} at ${plural(data.n_spots - (unplaced ? 1 : 0), "position")}`;
    if (data.sampled) {
      text = `showing a sample of ${shown.toLocaleString()} of ${plural(data.n_spots, "position")} ` +
        `(${drawnDocs.toLocaleString()} of ${plural(data.n_docs, "document")}); ` +
        "cluster sizes and names count all documents";
    }
    if (unplaced) text += `; ${plural(unplaced, "document")} without coordinates (not drawn)`;
    return text;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // A concept's link only when it is a plain relative path to a file: percent-encoded segments,
  // no scheme ("javascript:"), host, absolute path, "..", query or fragment (the rule of
  // saeembed/links.py). Each segment is decoded and encoded again; anything else gets no link.
  const SEGMENT = new RegExp("^(?:[A-Za-z0-9._~!$&'()*+,;=@-]|%[0-9A-Fa-f]{2})+$");
  const RESERVED = new RegExp("[!'()*]", "g");  // what encodeURIComponent leaves and quote() encodes
  function safeHref(href) {
    if (typeof href !== "string") return null;
    const names = [];
    for (const part of (href.startsWith("./") ? href.slice(2) : href).split("/")) {
      if (!SEGMENT.test(part)) return null;
      let name;
      try { name = decodeURIComponent(part); } catch (e) { return null; }
      if (name === "." || name === ".." || /[\u0000-\u001f\u007f\/\\]/.test(name)) return null;
      const hex = (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`;
      names.push(encodeURIComponent(name).replace(RESERVED, hex));  // as Python's quote()
    }
    return names.join("/");
  }

  function drawLegend() {
    legend.replaceChildren();
    if (mode === "cluster") {
      legend.append(el("p", "note", "Marker area grows with the documents at one position " +
        "(identical concept vectors share one); hover a marker to list them, a name to pick out its cluster."));
      const ids = data.clusters.map((c) => c.id)
        .sort((a, b) => (a === -1) - (b === -1) || clusters.get(b).size - clusters.get(a).size || a - b);
      for (const c of ids) {
        const item = el("div", "item"), swatch = el("span", "swatch");
        swatch.style.background = clusterColor.get(c);
        item.append(swatch, el("span", "name", clusterName(c)), el("span", "size", clusters.get(c).size.toLocaleString()));
        item.title = clusterName(c);  // the whole name, also where the page is too narrow
        item.addEventListener("mouseenter", () => { focus = c; redraw(); });
        item.addEventListener("mouseleave", () => { focus = null; redraw(); });
        legend.append(item);
        const concepts = (data.cluster_concepts || {})[c];
        if (concepts && concepts.length) {  // a click lists the cluster's concepts, linked
          const list = el("ul", "concepts");
          for (const x of concepts) {
            const href = safeHref(x.href), text = `#${x.feature} ${x.label || "(unlabelled)"}`;
            const link = href ? el("a", "", text) : el("span", "", text);
            if (href) link.setAttribute("href", href);
            const li = el("li");
            li.append(link);
            list.append(li);
          }
          list.hidden = true;
          item.style.cursor = "pointer";
          item.addEventListener("click", () => { list.hidden = !list.hidden; });
          legend.append(list);
        }
      }
      return;
    }
    const [lo, hi] = extent(valuesOf(mode));
    const bar = el("div", "ramp"), ends = el("div", "ends");
    bar.style.background = `linear-gradient(to right, ${[0, 0.25, 0.5, 0.75, 1].map(ramp).join(", ")})`;
    ends.append(el("span", "", format(lo)), el("span", "", format(hi)));
    legend.append(el("div", "name", mode), bar, ends,
      el("p", "note", "A position holding several documents shows their mean value."));
  }

  let pending = false;
  function redraw() {  // a legend hover redraws the map once per frame, not once per event
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; drawMap(); });
  }

  const format = (v) => (isNumber(v) ? Number(v.toPrecision(4)).toString() : "–");
  const cut = (text, limit) => (text.length <= limit ? text : `${text.slice(0, limit - 1)}…`);

  // --- hover ------------------------------------------------------------------------------
  function describe(s) {
    const k = count(s), first = start[s];
    if (k === 1) {
      const lines = [data.doc ? `${data.doc[first]} (doc_id ${data.doc_id[first]})` : `doc_id: ${data.doc_id[first]}`, `cluster: ${clusterName(data.cluster[first])}`];
      if (mode !== "cluster") lines.push(`${mode}: ${format(data.columns[mode][first])}`);
      if (data.text) lines.push("", data.text[first] ?? "");
      return lines.join("\n");
    }
    const lines = [`${k.toLocaleString()} documents here`];
    const parts = mix[s].map(([c, m]) => `${clusterName(c)} (${m.toLocaleString()})`);
    lines.push(mix[s].length === 1 ? `cluster: ${clusterName(main(s))}` : `clusters: ${parts.join(", ")}`);
    if (mode !== "cluster") {
      const [lo, hi] = extent(data.columns[mode].slice(first, first + k));
      lines.push(`${mode}: mean ${format(valuesOf(mode)[s])} (${format(lo)} to ${format(hi)})`);
    }
    lines.push("");
    for (let d = first; d < first + Math.min(k, LISTED); d++) {
      const text = data.text && data.text[d] ? `: ${cut(data.text[d], 140)}` : "";
      lines.push(`• ${(data.doc || data.doc_id)[d]}${text}`);
    }
    if (k > LISTED) {
      const ids = (data.doc || data.doc_id).slice(first + LISTED, first + Math.min(k, LISTED + LISTED_IDS));
      const rest = k - LISTED - ids.length;
      lines.push(`and ${(k - LISTED).toLocaleString()} more: ${ids.join(", ")}${rest > 0 ? `, … (${rest.toLocaleString()} more)` : ""}`);
    }
    return lines.join("\n");
  }

  function hover(event) {
    const rect = canvas.getBoundingClientRect();
    const mx = event.clientX - rect.left, my = event.clientY - rect.top;
    const s = nearest(mx, my);
    if (s < 0) return hide();
    tooltip.textContent = describe(s);
    tooltip.hidden = false;
    const left = mx + 14 + tooltip.offsetWidth > rect.width ? mx - 14 - tooltip.offsetWidth : mx + 14;
    const top = my + 14 + tooltip.offsetHeight > rect.height ? my - 14 - tooltip.offsetHeight : my + 14;
    tooltip.style.left = `${Math.max(0, left)}px`;
    tooltip.style.top = `${Math.max(0, top)}px`;
    const size = 2 * radius(s) + 6;
    Object.assign(ring.style, {
      display: "block", left: `${px[s]}px`, top: `${py[s]}px`, width: `${size}px`, height: `${size}px`,
      margin: `${-size / 2 - 1}px 0 0 ${-size / 2 - 1}px`,
    });
  }

  function hide() {
    tooltip.hidden = true;
    ring.style.display = "none";
  }

  // What the page drew, for tests and the #selftest report.
  function state() {
    let docs = 0;
    for (let s = 0; s < nSpots; s++) docs += count(s);
    return {
      nDocs: data.n_docs, nSpots: data.n_spots, sampled: data.sampled, listedDocs: docs,
      markers: drawnSpots, points: drawnDocs, base: BASE, caption: caption(),
      counts: Array.from({ length: nSpots }, (_, s) => count(s)),
      labels: labels.map((l) => ({ id: l.id, text: l.lines.join(" "), shown: l.shown, ...l.box })),
      readyMs: Number(document.body.dataset.readyMs), drawMs: Number(document.body.dataset.drawMs),
    };
  }

  // Headless check (URL #selftest): hover the first drawn position with a real mousemove
  // event, then report what was drawn and shown as JSON in a pre#selftest element.
  function selfTest() {
    const first = [...Array(nSpots).keys()].find((s) => !Number.isNaN(px[s]));
    if (first !== undefined) {
      const rect = canvas.getBoundingClientRect();
      canvas.dispatchEvent(new MouseEvent("mousemove", {
        clientX: rect.left + px[first], clientY: rect.top + py[first], bubbles: true,
      }));
    }
    const report = el("pre", "", JSON.stringify({
      points: drawnDocs,
      markers: drawnSpots,
      labels: labels.filter((l) => l.shown).map((l) => l.lines.join(" ")),
      tooltip: tooltip.hidden ? "" : tooltip.textContent,
      colorModes: [...select.options].map((o) => o.value),
    }));
    report.id = "selftest";
    document.body.append(report);
  }

  function drawMap() {
    draw();
    document.getElementById("count").textContent = caption();
  }

  // --- start ------------------------------------------------------------------------------
  for (const name of ["cluster", ...Object.keys(data.columns)]) {
    const option = el("option", "", name);
    option.value = name;
    select.append(option);
  }
  select.addEventListener("change", () => { mode = select.value; focus = null; hide(); drawMap(); drawLegend(); });
  canvas.addEventListener("mousemove", hover);
  canvas.addEventListener("mouseleave", hide);
  window.addEventListener("resize", () => { hide(); layout(); drawMap(); });
  layout();
  drawMap();
  drawLegend();
  window.saeembedMap = { state, describe, nearest, draw: drawMap, position: (s) => [px[s], py[s], radius(s)] };
  document.body.dataset.drawMs = (performance.now() - t0).toFixed(1);
  document.body.dataset.readyMs = performance.now().toFixed(1);
  if (location.hash === "#selftest") selfTest();
})();
