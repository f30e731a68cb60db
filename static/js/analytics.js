// The analytics dashboard: one Chart.js chart per area (static/js/charts.js), drawn from the JSON the
// page carries (the same rows as the table under it). No inline script: the page's CSP forbids it.
// Live: the staff socket (/ws/inbox) says when a message lands; a couple of seconds later the
// page reads itself again (?live=1: figures at most a few seconds old) and swaps the figures in.
(function () {
  "use strict";
  var root = document.querySelector(".analytics");
  if (!root) { return; }
  window.analyticsLive = {reloads: 0};

  function draw() {
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var source = document.getElementById(canvas.dataset.chart);
      if (source && window.drawChart) { window.drawChart(canvas, JSON.parse(source.textContent)); }
    });
  }

  function reload() {
    var url = new URL(location.href);
    url.searchParams.set("live", "1");
    fetch(url, {credentials: "same-origin"}).then(function (response) {
      if (!response.ok) { throw new Error("analytics reload: " + response.status); }
      return response.text();
    }).then(function (html) {
      var fresh = new DOMParser().parseFromString(html, "text/html").querySelector(".analytics");
      if (!fresh) { return; }
      root.querySelectorAll("canvas[data-chart]").forEach(function (c) { if (c.chart) { c.chart.destroy(); } });
      root.innerHTML = fresh.innerHTML;
      draw();
      window.analyticsLive.reloads += 1;
    }).catch(function (err) { console.warn(err); });
  }

  var timer = null, attempt = 0;
  function connect() {
    var ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/inbox");
    ws.onopen = function () { attempt = 0; root.dataset.live = "live"; };
    ws.onmessage = function () {
      clearTimeout(timer);
      timer = setTimeout(reload, 2000);  // a burst of events: one reload
    };
    ws.onclose = function (e) {
      root.dataset.live = "down";
      if (e.code === 4401 || e.code === 4403) { return; }  // access ended: reconnecting would be refused
      attempt += 1;
      setTimeout(connect, Math.min(30000, 500 * Math.pow(2, attempt)));
    };
  }

  draw();
  if (window.WebSocket) { connect(); }
})();
