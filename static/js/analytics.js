// The analytics dashboard: one Chart.js chart per area, drawn from the JSON the page carries
// (the same rows as the table under it). No inline script: the page's CSP forbids it.
(function () {
  "use strict";
  var colours = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2"];
  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    var source = document.getElementById(canvas.dataset.chart);
    if (!source || typeof Chart === "undefined") { return; }
    var spec = JSON.parse(source.textContent);
    spec.datasets.forEach(function (set, i) {
      set.borderColor = colours[i % colours.length];
      set.backgroundColor = colours[i % colours.length] + "99";
      set.spanGaps = false;  // an empty average is a gap, not a zero
    });
    canvas.chart = new Chart(canvas, {
      type: spec.type,
      data: {labels: spec.labels, datasets: spec.datasets},
      options: {animation: false, responsive: true, interaction: {mode: "index", intersect: false},
                plugins: {legend: {position: "bottom"}}}
    });
  });
})();
