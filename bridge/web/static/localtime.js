// Times in the reader's own time zone, for every page of the web view.
//
// The server writes each time in UTC, in a <time datetime="ISO 8601"> element
// whose text stays for readers without JavaScript.  This script rewrites the
// text in the reader's zone and puts the UTC time in the element's title (the
// hover).  It is a classic script (the CSP allows no inline script), loaded with
// <script src="/static/localtime.js" defer>, and exposes one small API:
//
//   hashbridgeLocalTime.format(iso, options?) -> string
//       The instant *iso* (anything Date parses: "2026-12-10T17:00:00Z",
//       "2026-12-10T12:00:00-05:00") in the reader's zone, e.g. "Thu 10 Dec,
//       12:00 EST" in en-GB or "Thu, Dec 10, 12:00 PM EST" in en-US.  *options*
//       are Intl.DateTimeFormat options replacing the default (weekday, day,
//       month, hour, minute, zone name); options.timeZone chooses a zone other
//       than the reader's (tests).  "" for an unparseable *iso*.
//   hashbridgeLocalTime.utc(iso) -> string
//       The same instant as "2026-12-10 17:00 UTC" (the hover text).
//   hashbridgeLocalTime.localize(root?)
//       Rewrites every <time datetime> under *root* (default: the document)
//       that holds a time of day, and not yet rewritten: text in the reader's
//       zone, title "<UTC time>" (kept if the server gave one), and
//       data-local="1".  A <time data-format="time"> shows the time of day only,
//       "date" the date only.  Call it again on content added later (the live
//       page does, for each arriving post).
//
// On load it localizes the whole document once.
"use strict";
(function () {
  const DEFAULT = { weekday: "short", day: "numeric", month: "short", hour: "2-digit",
                    minute: "2-digit", timeZoneName: "short" };
  const SHAPES = {
    time: { hour: "2-digit", minute: "2-digit", timeZoneName: "short" },
    date: { weekday: "short", day: "numeric", month: "short", year: "numeric" },
  };
  const formatters = new Map();

  function formatter(options) {
    const key = JSON.stringify(options);
    let f = formatters.get(key);
    if (!f) {
      f = new Intl.DateTimeFormat(undefined, options);
      formatters.set(key, f);
    }
    return f;
  }

  function parse(iso) {
    const d = new Date(iso);
    return isNaN(d.getTime()) ? null : d;
  }

  function format(iso, options) {
    const d = parse(iso);
    return d ? formatter(options || DEFAULT).format(d) : "";
  }

  function pad(n) { return String(n).padStart(2, "0"); }

  function utc(iso) {
    const d = parse(iso);
    if (!d) return "";
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) +
      " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + " UTC";
  }

  function localize(root) {
    const scope = root || document;
    const found = scope.querySelectorAll ? scope.querySelectorAll("time[datetime]") : [];
    const all = scope.matches && scope.matches("time[datetime]") ? [scope, ...found] : found;
    for (const el of all) {
      if (el.dataset.local === "1") continue;
      const iso = el.getAttribute("datetime") || "";
      if (iso.indexOf("T") < 0) continue;  // a date alone has no zone to convert
      const text = format(iso, SHAPES[el.dataset.format] || DEFAULT);
      if (!text) continue;
      if (!el.title) el.title = utc(iso);
      el.textContent = text;
      el.dataset.local = "1";
    }
  }

  window.hashbridgeLocalTime = { format: format, utc: utc, localize: localize };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { localize(); });
  } else {
    localize();
  }
})();
