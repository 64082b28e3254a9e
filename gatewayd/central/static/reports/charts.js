// Bar, pie, ring and line charts as inline SVG, built with DOM calls (no innerHTML, no CDN).
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const COLOURS = ["#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#92400e", "#475569"];

  function svg(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function short(value) {
    const n = Number(value);
    if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (Math.abs(n) >= 1e3) return (n / 1e3).toFixed(1) + "k";
    return String(n);
  }

  function legend(labels, values) {
    const box = document.createElement("div");
    box.className = "legend";
    labels.forEach((label, i) => {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = COLOURS[i % COLOURS.length];
      item.append(swatch, document.createTextNode(label + " (" + short(values[i]) + ")"));
      box.append(item);
    });
    return box;
  }

  function bar(labels, values) {
    const width = 360, height = 200, pad = 30;
    const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "data-chart": "bar" });
    const max = Math.max(1, ...values.map((v) => Math.abs(v)));
    const step = (width - pad) / Math.max(1, values.length);
    const zero = height - pad;
    root.append(svg("line", { x1: pad, y1: zero, x2: width, y2: zero, stroke: "#9ca3af" }));
    values.forEach((value, i) => {
      const h = (Math.abs(value) / max) * (height - 2 * pad);
      const x = pad + i * step + step * 0.1;
      const y = value >= 0 ? zero - h : zero;
      root.append(svg("rect", { x, y, width: step * 0.8, height: Math.max(h, 0.5), fill: value >= 0 ? COLOURS[0] : COLOURS[3] }));
      root.append(svg("text", { x: x + step * 0.4, y: Math.max(10, y - 3), "text-anchor": "middle" }, short(value)));
      if (values.length <= 12) {
        root.append(svg("text", { x: x + step * 0.4, y: height - 12, "text-anchor": "middle" }, String(labels[i]).slice(0, 10)));
      }
    });
    return root;
  }

  function pie(labels, values, ring) {
    const size = 200, r = 90, c = size / 2;
    const root = svg("svg", { width: size, height: size, viewBox: `0 0 ${size} ${size}`, role: "img", "data-chart": ring ? "ring" : "pie" });
    const positive = values.map((v) => Math.max(0, Number(v)));
    const total = positive.reduce((a, b) => a + b, 0);
    if (total === 0) {
      root.append(svg("text", { x: c, y: c, "text-anchor": "middle" }, "no data"));
      return root;
    }
    let angle = -Math.PI / 2;
    positive.forEach((value, i) => {
      if (value === 0) return;
      const sweep = (value / total) * Math.PI * 2;
      const colour = COLOURS[i % COLOURS.length];
      if (sweep >= Math.PI * 2 - 1e-9) {
        root.append(svg("circle", { cx: c, cy: c, r, fill: colour, "data-slice": labels[i] }));
      } else {
        const x1 = c + r * Math.cos(angle), y1 = c + r * Math.sin(angle);
        const x2 = c + r * Math.cos(angle + sweep), y2 = c + r * Math.sin(angle + sweep);
        const large = sweep > Math.PI ? 1 : 0;
        root.append(svg("path", { d: `M${c},${c} L${x1},${y1} A${r},${r} 0 ${large} 1 ${x2},${y2} Z`, fill: colour, "data-slice": labels[i] }));
      }
      angle += sweep;
    });
    if (ring) {
      root.append(svg("circle", { cx: c, cy: c, r: r * 0.55, fill: "#fff" }));
      root.append(svg("text", { x: c, y: c + 4, "text-anchor": "middle" }, short(total)));
    }
    return root;
  }

  function line(labels, values) {
    const width = 420, height = 200, pad = 30;
    const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "data-chart": "line" });
    const max = Math.max(1, ...values), min = Math.min(0, ...values);
    const x = (i) => pad + (values.length <= 1 ? 0 : (i * (width - 2 * pad)) / (values.length - 1));
    const y = (v) => height - pad - ((v - min) / (max - min || 1)) * (height - 2 * pad);
    root.append(svg("line", { x1: pad, y1: y(0), x2: width - pad, y2: y(0), stroke: "#9ca3af" }));
    const points = values.map((v, i) => `${x(i)},${y(v)}`).join(" ");
    root.append(svg("polyline", { points, fill: "none", stroke: COLOURS[0], "stroke-width": 2 }));
    values.forEach((v, i) => root.append(svg("circle", { cx: x(i), cy: y(v), r: 3, fill: COLOURS[0] })));
    root.append(svg("text", { x: pad, y: 12 }, "max " + short(max)));
    if (labels.length) {
      root.append(svg("text", { x: pad, y: height - 8 }, labels[0]));
      root.append(svg("text", { x: width - pad, y: height - 8, "text-anchor": "end" }, labels[labels.length - 1]));
    }
    return root;
  }

  // One chart from a report's chart spec and its table.
  function draw(spec, table) {
    const labels = table.rows.map((row) => String(row[spec.label_column]));
    const values = table.rows.map((row) => Number(row[spec.value_columns[0]]) || 0);
    const figure = document.createElement("figure");
    figure.className = "chart";
    const caption = document.createElement("figcaption");
    caption.textContent = spec.title;
    figure.append(caption);
    if (spec.type === "bar") figure.append(bar(labels, values));
    else if (spec.type === "line") figure.append(line(labels, values));
    else figure.append(pie(labels, values, spec.type === "ring"), legend(labels, values));
    return figure;
  }

  return { draw, bar, pie, line };
})();
