/* Draws the charts of consumption pages with the vendored Chart.js. Each chart's numbers come
   from a <script type="application/json"> element written from the same rows as the table next
   to it (exact decimal strings; converted to numbers here only to draw). */
(function () {
  "use strict";
  var palette = ["#2456a6", "#1f7a3a", "#a66a24", "#7a1f6e", "#24a69b", "#a62424"];

  function draw(canvas) {
    var source = document.getElementById(canvas.dataset.chart);
    if (!source || typeof Chart === "undefined") return;
    var spec = JSON.parse(source.textContent);
    var datasets = spec.datasets.map(function (set, index) {
      var colour = palette[index % palette.length];
      return {
        label: set.label,
        // null: a day of the month still to come, drawn as a gap.
        data: set.data.map(function (value) { return value === null ? null : Number(value); }),
        backgroundColor: colour,
        borderColor: colour,
        tension: 0.2,
      };
    });
    new Chart(canvas, {
      type: spec.kind,
      data: { labels: spec.labels, datasets: datasets },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        scales: { y: { beginAtZero: true } },
        plugins: { legend: { display: datasets.length > 1 } },
      },
    });
  }

  function drawAll() {
    document.querySelectorAll("canvas[data-chart]").forEach(draw);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
