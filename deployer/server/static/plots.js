// The deployment page's live plots: the server's engine samples drawn with the vendored uPlot,
// refreshed every 15 s; the window is chosen in the page's select.
(function () {
  "use strict";
  var box = document.getElementById("plots");
  if (!box || typeof uPlot === "undefined") { return; }
  var plots = [
    {id: "plot-requests", title: "requests", series: [["running", "running"], ["waiting", "waiting"]]},
    {id: "plot-kv", title: "KV cache use (%)", series: [["kv_usage", "KV cache", 100]]},
    {id: "plot-tokens", title: "generated tokens/s", series: [["tokens_per_second", "tokens/s"]]},
    {id: "plot-latency", title: "latency (ms)", series: [
      ["ttft_p50", "TTFT p50", 1000], ["ttft_p95", "TTFT p95", 1000],
      ["itl_p50", "ITL p50", 1000], ["itl_p95", "ITL p95", 1000]]}
  ];
  var colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
  var drawn = {};
  function draw(data) {
    plots.forEach(function (p) {
      var columns = [data.t].concat(p.series.map(function (s) {
        var scale = s[2] || 1;
        return data[s[0]].map(function (v) { return v === null ? null : v * scale; });
      }));
      if (drawn[p.id]) { drawn[p.id].setData(columns); return; }
      var opts = {
        title: p.title, width: 460, height: 200, spanGaps: false,
        series: [{}].concat(p.series.map(function (s, i) {
          return {label: s[1], stroke: colors[i % colors.length], width: 1.5};
        }))
      };
      drawn[p.id] = new uPlot(opts, columns, document.getElementById(p.id));
    });
    var points = document.getElementById("plot-points");
    if (points) { points.textContent = data.t.length + " points, " + data.step + " s each"; }
  }
  function load() {
    var seconds = document.getElementById("plot-window").value;
    fetch(box.dataset.src + "?seconds=" + seconds, {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(draw)
      .catch(function (e) { box.dataset.error = String(e); });
  }
  document.getElementById("plot-window").addEventListener("change", load);
  load();
  setInterval(load, 15000);
})();
