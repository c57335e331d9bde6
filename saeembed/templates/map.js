
"use strict";
(() => {
  const data = JSON.parse(document.getElementById("map-data").textContent);
  const n = data.doc_id.length;
  const canvas = document.getElementById("canvas");
  const ctx = canvas.getContext("2d");
  const tooltip = document.getElementById("tooltip");
  const ring = document.getElementById("ring");
  const legend = document.getElementById("legend");
  const select = document.getElementById("color-mode");

  const PAD = 24;        // CSS pixels kept free around the points
  const CELL = 8;        // hover grid cell size, CSS pixels
  const HOVER_PX = 6;    // hover radius, must stay below CELL
  const SIZE = 3, OUTLIER_SIZE = 2, GREY = "#bbbbbb", STEPS = 64;
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
    "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5", "#393b79"];
  const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

  const px = new Float64Array(n), py = new Float64Array(n);  // positions in CSS pixels
  let grid = null, drawn = 0, mode = "cluster";

  // --- colours ---------------------------------------------------------------------------
  const sizes = new Map();
  for (const c of data.cluster) sizes.set(c, (sizes.get(c) || 0) + 1);
  const clusterColor = new Map([[-1, GREY]]);
  [...sizes.keys()].filter((c) => c !== -1).sort((a, b) => a - b).forEach((c, i) => {
    clusterColor.set(c, i < PALETTE.length ? PALETTE[i] : `hsl(${(i * 137.508) % 360},60%,50%)`);
  });
  const clusterName = (c) => (c === -1 ? "outliers" : data.cluster_names[c] ?? `cluster ${c}`);
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

  // Points grouped by "size|colour" so each group is one fillStyle change. Outliers come first
  // (drawn underneath); in a value mode points are ordered by value so high values end on top.
  function groups() {
    const order = [...Array(n).keys()];
    const values = mode === "cluster" ? null : data.columns[mode];
    const [lo, hi] = values ? extent(values) : [0, 0];
    const rank = (i) => (values ? (isNumber(values[i]) ? values[i] : -Infinity) : 0);
    const outlier = (i) => (data.cluster[i] === -1 ? 0 : 1);
    order.sort((a, b) => outlier(a) - outlier(b) || rank(a) - rank(b) || a - b);
    const result = new Map();
    for (const i of order) {
      let color = clusterColor.get(data.cluster[i]);
      if (values) {
        const v = values[i];
        color = !isNumber(v) ? GREY : ramp(hi > lo ? Math.round(((v - lo) / (hi - lo)) * STEPS) / STEPS : 0);
      }
      const key = `${data.cluster[i] === -1 ? OUTLIER_SIZE : SIZE}|${color}`;
      if (!result.has(key)) result.set(key, []);
      result.get(key).push(i);
    }
    return result;
  }

  // --- layout and hover index -------------------------------------------------------------
  function layout() {
    const { width, height } = canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const [x0, x1] = extent(data.x), [y0, y1] = extent(data.y);
    const scale = Math.max(0, Math.min((width - 2 * PAD) / (x1 - x0 || 1), (height - 2 * PAD) / (y1 - y0 || 1)));
    const ox = (width - (x1 - x0) * scale) / 2, oy = (height - (y1 - y0) * scale) / 2;
    for (let i = 0; i < n; i++) {
      const ok = isNumber(data.x[i]) && isNumber(data.y[i]);
      px[i] = ok ? ox + (data.x[i] - x0) * scale : NaN;
      py[i] = ok ? height - oy - (data.y[i] - y0) * scale : NaN;  // y grows upwards
    }
    grid = buildGrid(width, height);
  }

  // Counting sort of point indices into CELL x CELL buckets: items[start[c]..start[c+1]).
  function buildGrid(width, height) {
    const cols = Math.ceil(width / CELL) + 1, rows = Math.ceil(height / CELL) + 1;
    const cellOf = new Int32Array(n).fill(-1), start = new Int32Array(cols * rows + 1);
    const cell = (x, m) => Math.min(m - 1, Math.max(0, Math.floor(x / CELL)));
    for (let i = 0; i < n; i++) {
      if (Number.isNaN(px[i])) continue;
      cellOf[i] = cell(py[i], rows) * cols + cell(px[i], cols);
      start[cellOf[i] + 1]++;
    }
    for (let c = 0; c < cols * rows; c++) start[c + 1] += start[c];
    const fill = start.slice(0, -1), items = new Int32Array(start[cols * rows]);
    for (let i = 0; i < n; i++) if (cellOf[i] >= 0) items[fill[cellOf[i]]++] = i;
    return { cols, rows, start, items };
  }

  function nearest(mx, my) {
    const { cols, rows, start, items } = grid;
    const cx = Math.floor(mx / CELL), cy = Math.floor(my / CELL);
    let best = -1, bestD = HOVER_PX * HOVER_PX;
    for (let gy = Math.max(0, cy - 1); gy <= Math.min(rows - 1, cy + 1); gy++) {
      for (let gx = Math.max(0, cx - 1); gx <= Math.min(cols - 1, cx + 1); gx++) {
        const c = gy * cols + gx;
        for (let k = start[c]; k < start[c + 1]; k++) {
          const i = items[k], d = (px[i] - mx) ** 2 + (py[i] - my) ** 2;
          if (d < bestD) { best = i; bestD = d; }
        }
      }
    }
    return best;
  }

  // --- drawing ----------------------------------------------------------------------------
  function draw() {
    const { width, height } = canvas.getBoundingClientRect();
    ctx.clearRect(0, 0, width, height);
    drawn = 0;
    for (const [key, indices] of groups()) {
      const size = Number(key.split("|")[0]);
      ctx.fillStyle = key.slice(key.indexOf("|") + 1);
      for (const i of indices) {
        if (Number.isNaN(px[i])) continue;
        ctx.fillRect(px[i] - size / 2, py[i] - size / 2, size, size);
        drawn++;
      }
    }
    document.getElementById("count").textContent = `${drawn.toLocaleString()} documents`;
    drawLegend();
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
      const ids = [...sizes.keys()].sort((a, b) => (a === -1) - (b === -1) || sizes.get(b) - sizes.get(a));
      for (const c of ids) {
        const item = el("div", "item"), swatch = el("span", "swatch");
        swatch.style.background = clusterColor.get(c);
        item.append(swatch, el("span", "name", clusterName(c)), el("span", "size", sizes.get(c)));
        item.title = clusterName(c);
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
    const [lo, hi] = extent(data.columns[mode]);
    const bar = el("div", "ramp"), ends = el("div", "ends");
    bar.style.background = `linear-gradient(to right, ${[0, 0.25, 0.5, 0.75, 1].map(ramp).join(", ")})`;
    ends.append(el("span", "", format(lo)), el("span", "", format(hi)));
    legend.append(el("div", "name", mode), bar, ends);
  }

  const format = (v) => (isNumber(v) ? Number(v.toPrecision(4)).toString() : "–");

  // --- hover ------------------------------------------------------------------------------
  function hover(event) {
    const rect = canvas.getBoundingClientRect();
    const mx = event.clientX - rect.left, my = event.clientY - rect.top;
    const i = nearest(mx, my);
    if (i < 0) return hide();
    const lines = [`doc_id: ${data.doc_id[i]}`, `cluster: ${clusterName(data.cluster[i])}`];
    if (mode !== "cluster") lines.push(`${mode}: ${format(data.columns[mode][i])}`);
    if (data.text) lines.push("", data.text[i]);
    tooltip.textContent = lines.join("\n");
    tooltip.hidden = false;
    const left = mx + 14 + tooltip.offsetWidth > rect.width ? mx - 14 - tooltip.offsetWidth : mx + 14;
    const top = my + 14 + tooltip.offsetHeight > rect.height ? my - 14 - tooltip.offsetHeight : my + 14;
    tooltip.style.left = `${Math.max(0, left)}px`;
    tooltip.style.top = `${Math.max(0, top)}px`;
    Object.assign(ring.style, { display: "block", left: `${px[i]}px`, top: `${py[i]}px` });
  }

  function hide() {
    tooltip.hidden = true;
    ring.style.display = "none";
  }

  // Headless check (URL #selftest): hover the first point with a real mousemove event, then
  // report what was drawn and shown as JSON in a pre#selftest element.
  function selfTest() {
    const first = [...Array(n).keys()].find((i) => !Number.isNaN(px[i]));
    if (first !== undefined) {
      const rect = canvas.getBoundingClientRect();
      canvas.dispatchEvent(new MouseEvent("mousemove", {
        clientX: rect.left + px[first], clientY: rect.top + py[first], bubbles: true,
      }));
    }
    const report = el("pre", "", JSON.stringify({
      points: drawn,
      tooltip: tooltip.hidden ? "" : tooltip.textContent,
      colorModes: [...select.options].map((o) => o.value),
    }));
    report.id = "selftest";
    document.body.append(report);
  }

  // --- start ------------------------------------------------------------------------------
  for (const name of ["cluster", ...Object.keys(data.columns)]) {
    const option = el("option", "", name);
    option.value = name;
    select.append(option);
  }
  select.addEventListener("change", () => { mode = select.value; hide(); draw(); });
  canvas.addEventListener("mousemove", hover);
  canvas.addEventListener("mouseleave", hide);
  window.addEventListener("resize", () => { hide(); layout(); draw(); });
  layout();
  draw();
  if (location.hash === "#selftest") selfTest();
})();
