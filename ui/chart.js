// Small SVG charts: messages per bucket as bars with the delivery rate as a line on a
// 0–100 % scale, and the failure rate alone on a scale that fits it. Drawn with DOM calls
// (no innerHTML), styled by classes in app.css, and resized by their viewBox, so they
// need no library.

import { clock } from "./lib.js";

const NS = "http://www.w3.org/2000/svg";
const WIDTH = 720;
const HEIGHT = 240;
const PAD = { top: 12, right: 52, bottom: 28, left: 48 };
/** Axis steps, in buckets: whole hours that divide a day, then days; days, weeks, months. */
const STEPS = { hour: [1, 2, 3, 6, 12, 24, 48, 96, 168], day: [1, 2, 7, 14, 28, 56, 91, 182] };
const MOST_TICKS = 8;

function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  element.append(...children);
  return element;
}

/** Rounds up to 1, 2 or 5 times a power of ten, for a readable axis. */
function niceMax(value, least = 4) {
  if (value <= least) return least;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * power).find((m) => m >= value);
}

/**
 * Which buckets get an axis label: every `step` buckets, the step the smallest of STEPS
 * that leaves at most MOST_TICKS labels, starting where the clock is at a multiple of it
 * (midnight for days, 00:00, 06:00… for six hours), so labels fall on round times.
 */
export function ticks(points, bucket) {
  const step = STEPS[bucket].find((s) => points.length / s <= MOST_TICKS) ?? STEPS[bucket].at(-1);
  const round = (point) => {
    if (bucket === "day") return true;
    const { hour, minute } = clock(point.start);
    return minute === 0 && hour % Math.min(step, 24) === 0;
  };
  const first = Math.max(0, points.findIndex(round));
  const indices = [];
  for (let index = first; index < points.length; index += step) indices.push(index);
  return indices;
}

function frame(summary) {
  return svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart", role: "img", "aria-label": summary,
  });
}

const plotWidth = WIDTH - PAD.left - PAD.right;
const plotHeight = HEIGHT - PAD.top - PAD.bottom;
const bottom = PAD.top + plotHeight;
const percent = (rate) => `${(rate * 100).toFixed(1)} %`;

/** Horizontal grid lines with their labels, left and right. */
function grid(chart, left, right) {
  for (const fraction of [0, 0.5, 1]) {
    const lineY = bottom - fraction * plotHeight;
    chart.append(svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: lineY, y2: lineY, class: "grid" }));
    if (left) {
      chart.append(svg("text", { x: PAD.left - 6, y: lineY + 4, class: "axis", "text-anchor": "end" },
        left(fraction)));
    }
    if (right) {
      chart.append(svg("text", { x: WIDTH - PAD.right + 6, y: lineY + 4, class: `axis ${right.class}` },
        right.text(fraction)));
    }
  }
}

/** A line through the points' `rate`s, broken where a bucket has none, with dots. */
function line(chart, points, x, y, name) {
  let path = "";
  let open = false;
  points.forEach((point, index) => {
    if (point.rate === null) {
      open = false;
      return;
    }
    path += `${open ? "L" : "M"}${x(index).toFixed(1)},${y(point.rate).toFixed(1)} `;
    open = true;
  });
  if (path) chart.append(svg("path", { d: path, class: `${name}-line` }));
  points.forEach((point, index) => {
    if (point.rate === null) return;
    chart.append(svg("circle", {
      cx: x(index), cy: y(point.rate), r: points.length > 60 ? 1.5 : 3, class: `${name}-dot`,
    }));
  });
}

/** The time axis: labels at `ticks`, each naming its bucket's start. */
function axis(chart, points, bucket, x, tick) {
  for (const index of ticks(points, bucket)) {
    chart.append(svg("text", {
      x: x(index), y: HEIGHT - 8, class: "axis tick", "text-anchor": "middle",
      "data-start": points[index].start.toISOString(),
    }, tick(points[index].start)));
  }
}

/**
 * Messages per bucket and the delivery rate. `points`: [{start: Date, total, rate (0..1 or
 * null)}]; `label(date)` names a bucket in tooltips, `tick(date)` on the axis.
 */
export function seriesChart(points, { bucket, label, tick, summary }) {
  const max = niceMax(Math.max(0, ...points.map((p) => p.total)));
  const step = plotWidth / Math.max(points.length, 1);
  const barWidth = Math.max(1, step * 0.7);
  const x = (index) => PAD.left + index * step + step / 2;
  const chart = frame(summary);
  grid(chart, (f) => String(Math.round(max * f)), { class: "rate-axis", text: (f) => `${Math.round(f * 100)}%` });
  points.forEach((point, index) => {
    const top = bottom - (point.total / max) * plotHeight;
    chart.append(svg("rect", {
      x: x(index) - barWidth / 2, y: top, width: barWidth, height: bottom - top, class: "bar",
    }, svg("title", {}, `${label(point.start)}: ${point.total} messages, delivery rate ${
      point.rate === null ? "none" : percent(point.rate)}`)));
  });
  line(chart, points, x, (rate) => bottom - rate * plotHeight, "rate");
  axis(chart, points, bucket, x, tick);
  return chart;
}

/** The failure rate per bucket on a scale from 0 to a round share above its highest. */
export function failureChart(points, { bucket, tick, summary }) {
  const highest = Math.max(0, ...points.map((p) => p.rate ?? 0));
  const max = niceMax(highest * 100, 1) / 100;
  const step = plotWidth / Math.max(points.length, 1);
  const x = (index) => PAD.left + index * step + step / 2;
  const chart = frame(summary);
  grid(chart, (f) => `${+(max * f * 100).toFixed(1)}%`);
  line(chart, points, x, (rate) => bottom - (rate / max) * plotHeight, "failure");
  axis(chart, points, bucket, x, tick);
  return chart;
}

