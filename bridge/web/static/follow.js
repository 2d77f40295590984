// Follow a hashbridge live stream (server-sent events) and reconnect after a
// failure with a doubling, jittered wait (a full server answers 503; a million
// pages must not come back in the same second).  Shared by the live page and
// the transcript of a running chat.
//
//   const f = window.hashbridgeFollow(streamUrl, {
//     since: "<boot>:<seq>",           // resume after this id (the page's data-last-id)
//     params: {network: "Lobby"},      // extra query parameters
//     onMessage: function (msg, ev) {}, // each change, parsed JSON
//     onReset: function (ev) {},        // the server cannot replay: reload what you show
//     onStatus: function (text) {},     // "Live", "Reconnecting…", "Disconnected"
//   });
//   f.connect(); f.disconnect(); f.lastId();
"use strict";
window.hashbridgeFollow = function (url, opts) {
  const o = opts || {};
  let lastId = o.since || "";
  let source = null;
  let retryTimer = null;
  let failures = 0;  // in a row: the wait doubles, up to a minute
  const status = o.onStatus || function () {};

  function connect() {
    clearTimeout(retryTimer);
    if (source) source.close();
    const params = new URLSearchParams();
    if (lastId) params.set("since", lastId);
    Object.keys(o.params || {}).forEach(function (k) {
      if (o.params[k]) params.set(k, o.params[k]);
    });
    source = new EventSource(url + "?" + params.toString());
    source.onopen = function () { failures = 0; status("Live"); };
    source.onmessage = function (ev) {
      lastId = ev.lastEventId || lastId;
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (o.onMessage) o.onMessage(msg, ev);
    };
    source.addEventListener("reset", function (ev) {
      lastId = ev.lastEventId || lastId;
      if (o.onReset) o.onReset(ev);
    });
    source.onerror = function () {
      status("Reconnecting…");
      if (source.readyState === EventSource.CLOSED) {
        clearTimeout(retryTimer);
        const wait = Math.min(60000, 2000 * Math.pow(2, failures));
        failures += 1;
        retryTimer = setTimeout(connect, wait / 2 + Math.random() * wait / 2);
      }
    };
  }

  function disconnect() {
    clearTimeout(retryTimer);
    if (source) { source.close(); source = null; }
    status("Disconnected");
  }

  return { connect: connect, disconnect: disconnect,
           lastId: function () { return lastId; } };
};
