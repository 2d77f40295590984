// Times in the reader's own time zone, for every page of the web view (the live
// page, transcripts, the events page, the directory).
//
// The server writes each time in a <time datetime="ISO 8601"> element whose text
// stays for readers without JavaScript.  This script rewrites the text in the
// reader's zone and puts the UTC time in the element's title (the hover).  It is a
// classic script (the CSP allows no inline script), loaded with
// <script src="/static/localtime.js" defer>, and exposes one small API:
//
//   hashbridgeLocalTime.format(when, shape?) -> string
//       The instant *when* (a Date, or anything Date parses:
//       "2026-12-10T17:00:00Z") in the reader's zone.  *shape* is either
//       Intl.DateTimeFormat options (default: weekday, day, month, hour, minute,
//       zone name, e.g. "Thu, Dec 10, 12:00 PM EST" in en-US; options.timeZone
//       chooses another zone, for tests), or a style name for schedules:
//       "short" "10 Dec, 18:00", "day" "Thu 10 Dec, 18:00", "time" "18:00",
//       "long" "Thu 10 Dec 2026, 18:00".  "" for an unparseable *when*.
//   hashbridgeLocalTime.utc(when) -> string
//       The same instant as "2026-12-10 17:00 UTC" (the hover text).
//   hashbridgeLocalTime.localize(root?) -> number
//       Rewrites every <time datetime> under *root* (default: the document) that
//       holds a time of day and is not yet rewritten, and returns how many:
//       * with data-local="<style>" (schedules): the style's text and " your
//         time" (data-local-suffix replaces it);
//       * otherwise (posts): the default Intl text, or with data-format="time"
//         the time of day only, "date" the date only; marked data-local="1".
//       Each gets the UTC title (kept if the server gave one) and
//       data-local-done="1".  Call it again on content added later (the live page
//       and transcripts do, for each arriving post).  render is the same function.
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
  const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                  "Nov", "Dec"];
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

  function parse(when) {
    const d = when instanceof Date ? when : new Date(when);
    return isNaN(d.getTime()) ? null : d;
  }

  function pad(n) { return String(n).padStart(2, "0"); }

  function styled(d, style) {
    const clock = pad(d.getHours()) + ":" + pad(d.getMinutes());
    const dayMonth = d.getDate() + " " + MONTHS[d.getMonth()];
    switch (style) {
      case "time": return clock;
      case "day": return DAYS[d.getDay()] + " " + dayMonth + ", " + clock;
      case "long": return DAYS[d.getDay()] + " " + dayMonth + " " + d.getFullYear() +
                          ", " + clock;
      default: return dayMonth + ", " + clock;
    }
  }

  function format(when, shape) {
    const d = parse(when);
    if (!d) return "";
    return typeof shape === "string" ? styled(d, shape) : formatter(shape || DEFAULT).format(d);
  }

  function utc(when) {
    const d = parse(when);
    if (!d) return "";
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) +
      " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + " UTC";
  }

  function localize(root) {
    const scope = root || document;
    const found = scope.querySelectorAll ? scope.querySelectorAll("time[datetime]") : [];
    const all = scope.matches && scope.matches("time[datetime]") ? [scope, ...found] : found;
    let n = 0;
    for (const el of all) {
      if (el.dataset.localDone) continue;
      const iso = el.getAttribute("datetime") || "";
      if (iso.indexOf("T") < 0) continue;  // a date alone has no zone to convert
      const style = el.dataset.local;
      let text;
      if (style && style !== "1") {
        const suffix = el.dataset.localSuffix !== undefined ? el.dataset.localSuffix
                                                            : " your time";
        text = format(iso, style);
        if (text) text += suffix;
      } else {
        text = format(iso, SHAPES[el.dataset.format] || DEFAULT);
        if (text) el.dataset.local = "1";
      }
      if (!text) continue;
      if (!el.title) el.title = utc(iso);
      el.textContent = text;
      el.dataset.localDone = "1";
      n += 1;
    }
    return n;
  }

  window.hashbridgeLocalTime = { format: format, utc: utc, localize: localize,
                                 render: localize };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { localize(); });
  } else {
    localize();
  }
})();
