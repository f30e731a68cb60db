// One Chart.js chart from the {type, labels, datasets} a page carries in a JSON script tag: the
// dashboard (analytics.js) and the report builder (builder.js) both draw with it. No inline script.
(function () {
  "use strict";
  var colours = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2"];

  window.drawChart = function (canvas, spec) {
    if (typeof Chart === "undefined") { return null; }
    if (canvas.chart) { canvas.chart.destroy(); }
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
    return canvas.chart;
  };
})();
