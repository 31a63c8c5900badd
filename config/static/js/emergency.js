// The emergency pages work without this file. With it, the session's window counts down
// (minutes:seconds) and the page reloads to the ended page at zero; the hand-over sheet gets
// its Print button.
(function () {
  "use strict";
  var LOW_SECONDS = 5 * 60;

  function twoDigits(n) { return (n < 10 ? "0" : "") + n; }

  function clock(seconds) {
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return h ? h + ":" + twoDigits(m) + ":" + twoDigits(s) : m + ":" + twoDigits(s);
  }

  function countDown(timer) {
    // Counted from the server's clock: a phone's own clock may be minutes off.
    var skew = Date.now() - Date.parse(timer.dataset.serverNow);
    var ends = Date.parse(timer.dataset.expiresAt) + (isNaN(skew) ? 0 : skew);
    var interval;
    function tick() {
      var left = Math.max(0, Math.round((ends - Date.now()) / 1000));
      timer.textContent = clock(left);
      timer.classList.toggle("emergency-timer--low", left <= LOW_SECONDS);
      if (left > 0) return;
      window.clearInterval(interval);
      var notice = document.querySelector("[data-window-ended]");
      if (notice) notice.hidden = false;
      window.setTimeout(function () { window.location.reload(); }, 2000);
    }
    tick();
    interval = window.setInterval(tick, 1000);
  }

  var timer = document.querySelector("[data-expires-at]");
  if (timer) countDown(timer);

  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () { window.print(); });
  });
})();
