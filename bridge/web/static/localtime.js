// Times in the reader's own time zone.  The server writes every time in the
// event's zone (readable without scripts); this rewrites each
//   <time datetime="2026-12-10T17:00:00+00:00" data-local="short">…</time>
// as "10 Dec, 18:00 your time" in the browser's zone, with the UTC time on hover.
//
// Exports window.hashbridgeLocaltime:
//   format(date, style) -> string   the Date in the browser's zone; style
//       "short": "10 Dec, 18:00"; "day": "Thu 10 Dec, 18:00";
//       "time": "18:00"; "long": "Thu 10 Dec 2026, 18:00"
//   utc(date) -> string             "2026-12-10 17:00 UTC" (the hover title)
//   render(root) -> number          rewrites every time[data-local] under root
//       (default: the document) not yet rewritten; returns how many it rewrote.
//       data-local names the style; data-local-suffix replaces " your time".
"use strict";
(function () {
  const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                  "Nov", "Dec"];

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function format(date, style) {
    const clock = pad(date.getHours()) + ":" + pad(date.getMinutes());
    const dayMonth = date.getDate() + " " + MONTHS[date.getMonth()];
    switch (style) {
      case "time": return clock;
      case "day": return DAYS[date.getDay()] + " " + dayMonth + ", " + clock;
      case "long": return DAYS[date.getDay()] + " " + dayMonth + " " + date.getFullYear() +
                          ", " + clock;
      default: return dayMonth + ", " + clock;
    }
  }

  function utc(date) {
    return date.getUTCFullYear() + "-" + pad(date.getUTCMonth() + 1) + "-" +
      pad(date.getUTCDate()) + " " + pad(date.getUTCHours()) + ":" +
      pad(date.getUTCMinutes()) + " UTC";
  }

  function render(root) {
    let n = 0;
    (root || document).querySelectorAll("time[data-local]").forEach(function (el) {
      if (el.dataset.localDone) return;
      const date = new Date(el.getAttribute("datetime"));
      if (isNaN(date.getTime())) return;
      const suffix = el.dataset.localSuffix !== undefined ? el.dataset.localSuffix
                                                          : " your time";
      el.title = utc(date);
      el.textContent = format(date, el.dataset.local) + suffix;
      el.dataset.localDone = "1";
      n += 1;
    });
    return n;
  }

  window.hashbridgeLocaltime = { format: format, utc: utc, render: render };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { render(); });
  } else {
    render();
  }
})();
