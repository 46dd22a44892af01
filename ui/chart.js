// A small SVG chart: messages per bucket as bars, the delivery rate as a line on a
// 0–100 % scale. Drawn with DOM calls (no innerHTML), styled by classes in app.css, and
// resized by its viewBox, so it needs no library.

const NS = "http://www.w3.org/2000/svg";
const WIDTH = 720;
const HEIGHT = 240;
const PAD = { top: 12, right: 52, bottom: 28, left: 48 };

function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  element.append(...children);
  return element;
}

/** Rounds up to 1, 2 or 5 times a power of ten, for a readable axis. */
function niceMax(value) {
  if (value <= 5) return 5;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * power).find((m) => m >= value);
}

/**
 * `points`: [{start: Date, total, rate (0..1 or null)}]; `label(date)` formats a bucket
 * for the axis and tooltips. Answers an <svg> with a text summary for screen readers.
 */
export function seriesChart(points, label, summary) {
  const plotWidth = WIDTH - PAD.left - PAD.right;
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  const max = niceMax(Math.max(0, ...points.map((p) => p.total)));
  const step = plotWidth / Math.max(points.length, 1);
  const barWidth = Math.max(1, step * 0.7);
  const y = (count) => PAD.top + plotHeight - (count / max) * plotHeight;
  const rateY = (rate) => PAD.top + plotHeight - rate * plotHeight;
  const x = (index) => PAD.left + index * step;

  const chart = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart", role: "img", "aria-label": summary,
  });
  for (const fraction of [0, 0.5, 1]) {
    const lineY = PAD.top + plotHeight - fraction * plotHeight;
    chart.append(
      svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: lineY, y2: lineY, class: "grid" }),
      svg("text", { x: PAD.left - 6, y: lineY + 4, class: "axis", "text-anchor": "end" },
        String(Math.round(max * fraction))),
      svg("text", { x: WIDTH - PAD.right + 6, y: lineY + 4, class: "axis rate-axis" },
        `${Math.round(fraction * 100)}%`),
    );
  }
  points.forEach((point, index) => {
    const top = y(point.total);
    const bar = svg("rect", {
      x: x(index) + (step - barWidth) / 2, y: top, width: barWidth,
      height: PAD.top + plotHeight - top, class: "bar",
    }, svg("title", {}, `${label(point.start)}: ${point.total} messages, delivery rate ${
      point.rate === null ? "none" : `${(point.rate * 100).toFixed(1)} %`}`));
    chart.append(bar);
  });
  // The rate line breaks where a bucket has no concluded message.
  let path = "";
  let open = false;
  points.forEach((point, index) => {
    if (point.rate === null) {
      open = false;
      return;
    }
    const px = x(index) + step / 2;
    path += `${open ? "L" : "M"}${px.toFixed(1)},${rateY(point.rate).toFixed(1)} `;
    open = true;
  });
  if (path) chart.append(svg("path", { d: path, class: "rate-line" }));
  points.forEach((point, index) => {
    if (point.rate === null) return;
    chart.append(svg("circle", {
      cx: x(index) + step / 2, cy: rateY(point.rate), r: points.length > 60 ? 1.5 : 3,
      class: "rate-dot",
    }));
  });
  const ticks = Math.min(points.length, 6);
  for (let tick = 0; tick < ticks; tick += 1) {
    const index = Math.round((tick * (points.length - 1)) / Math.max(ticks - 1, 1));
    chart.append(svg("text", {
      x: x(index) + step / 2, y: HEIGHT - 8, class: "axis", "text-anchor": "middle",
    }, label(points[index].start)));
  }
  return chart;
}
