// Live countdowns on My access: the server already wrote the time left, this keeps it moving.
(function () {
  "use strict";
  function words(seconds) {
    if (seconds <= 0) return "ended";
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    if (h) return h + " h " + m + " min";
    return m ? m + " min " + s + " s" : s + " s";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-countdown]").forEach(function (el) {
      var left = Math.round((Date.parse(el.getAttribute("datetime")) - now) / 1000);
      el.textContent = words(left);
      if (left <= 0) { window.setTimeout(function () { window.location.reload(); }, 1500); }
    });
    document.querySelectorAll("progress[data-ends]").forEach(function (bar) {
      var start = Date.parse(bar.dataset.started), end = Date.parse(bar.dataset.ends);
      bar.value = Math.max(0, Math.min(100, 100 * (now - start) / (end - start)));
    });
  }
  tick();
  window.setInterval(tick, 1000);
})();
