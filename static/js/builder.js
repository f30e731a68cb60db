// The report builder (/analytics/builder/): draws the report's chart (static/js/charts.js) from the
// JSON in its canvas's data-chart (the same rows as the table under it), and again each time htmx swaps a new
// report in. No inline script: the page's CSP forbids it.
(function () {
  "use strict";
  function draw() {
    var canvas = document.querySelector("canvas.builder-chart");
    if (canvas && window.drawChart) { window.drawChart(canvas, JSON.parse(canvas.dataset.chart)); }
  }
  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("htmx:load", draw);  // new content swapped in (the form that asked is replaced too)
})();
