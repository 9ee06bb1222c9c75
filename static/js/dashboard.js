// Dashboard charts: attainment by row, the cumulative trend and the attainment histogram.
// Data comes from the page (json_script "dashboard-data"); Chart.js is vendored (global Chart).

const data = JSON.parse(document.getElementById("dashboard-data").textContent);
const charts = {};
const money = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const palette = { booked: "#2563eb", quota: "#94a3b8", cumulative: "#16a34a" };

function baseOptions(extra = {}) {
  return {
    animation: false, // drawn once; nothing to animate, and tests read the canvas at once
    responsive: true,
    maintainAspectRatio: false,
    plugins: {
      legend: { position: "bottom" },
      tooltip: {
        callbacks: {
          label: (ctx) => `${ctx.dataset.label}: ${ctx.parsed.y === null ? "—" : money.format(ctx.parsed.y)}`,
        },
      },
    },
    scales: { y: { beginAtZero: true, ticks: { callback: (v) => money.format(v) } } },
    ...extra,
  };
}

function attainmentChart() {
  const canvas = document.getElementById("attainment-chart");
  if (!canvas || !data.rows.length) return;
  const hasQuota = data.rows.some((r) => r.quota !== null);
  const datasets = [{ label: "Booked", data: data.rows.map((r) => r.booked), backgroundColor: palette.booked }];
  if (hasQuota) {
    datasets.push({ label: "Quota", data: data.rows.map((r) => r.quota), backgroundColor: palette.quota });
  }
  charts.attainment = new Chart(canvas, {
    type: "bar",
    data: { labels: data.rows.map((r) => r.label), datasets },
    options: baseOptions(),
  });
}

function trendChart() {
  const canvas = document.getElementById("trend-chart");
  const trend = data.trend;
  if (!canvas || !trend) return;
  const datasets = [
    {
      type: "bar",
      label: "Booked in the month",
      data: trend.booked,
      backgroundColor: "rgba(37, 99, 235, 0.35)",
    },
    {
      type: "line",
      label: "Cumulative booked",
      data: trend.cumulative_booked,
      borderColor: palette.cumulative,
      backgroundColor: palette.cumulative,
      spanGaps: false,
    },
  ];
  if (trend.cumulative_quota) {
    datasets.push({
      type: "line",
      label: "Cumulative quota",
      data: trend.cumulative_quota,
      borderColor: palette.quota,
      backgroundColor: palette.quota,
      borderDash: [6, 4],
    });
  }
  charts.trend = new Chart(canvas, { data: { labels: trend.months, datasets }, options: baseOptions() });
}

function bandLabels(edges) {
  const pct = (v) => `${Math.round(v * 100)}%`;
  const labels = [`< ${pct(edges[0])}`];
  for (let i = 0; i < edges.length - 1; i += 1) labels.push(`${pct(edges[i])}–${pct(edges[i + 1])}`);
  labels.push(`≥ ${pct(edges[edges.length - 1])}`);
  return labels;
}

function histogramChart() {
  const canvas = document.getElementById("histogram-chart");
  const histogram = data.histogram;
  if (!canvas || !histogram) return;
  charts.histogram = new Chart(canvas, {
    type: "bar",
    data: {
      labels: bandLabels(histogram.edges),
      datasets: [{ label: "Reps", data: histogram.counts, backgroundColor: palette.booked }],
    },
    options: baseOptions({
      plugins: { legend: { display: false } },
      scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
    }),
  });
}

attainmentChart();
trendChart();
histogramChart();
window.TesseraDashboard = { charts, data };
document.documentElement.dataset.dashboardReady = "true";
