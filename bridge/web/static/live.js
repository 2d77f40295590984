// Live updates for the community page.  Without this script the page is a plain
// archive.  Posts arrive as server-rendered, escaped HTML; the CSP allows no
// inline script, so even a mistake there could not execute.
"use strict";
(function () {
  const list = document.getElementById("posts");
  if (!list || list.dataset.live !== "1" || !window.EventSource || !window.hashbridgeFollow) {
    return;
  }
  const controls = document.getElementById("controls");
  const statusEl = document.getElementById("status");
  const pauseBtn = document.getElementById("pause");
  const waitingEl = document.getElementById("waiting");
  const network = list.dataset.network || "";
  let paused = false;
  let held = [];
  controls.hidden = false;

  function setStatus(text) { statusEl.textContent = text; }

  function nodeFrom(html) {
    const t = document.createElement("template");
    t.innerHTML = html.trim();
    return t.content.firstElementChild;
  }

  function apply(msg) {
    const existing = document.getElementById("p-" + msg.id);
    if (msg.kind === "deleted" || msg.kind === "hidden") {
      if (existing) existing.remove();
      return;
    }
    if (!msg.html) return;
    if (network && msg.network !== network) return;
    const node = nodeFrom(msg.html);
    if (!node) return;
    if (existing) {
      existing.replaceWith(node);
    } else if (msg.kind === "posted") {
      node.classList.add("fresh");
      list.appendChild(node);
      const empty = document.getElementById("empty");
      if (empty) empty.remove();
    }
  }

  function onMessage(msg) {
    if (paused) {
      held.push(msg);
      waitingEl.hidden = false;
      waitingEl.textContent = held.length + " new while paused";
      return;
    }
    apply(msg);
  }

  async function reset() {
    // The server cannot replay from our position (it restarted, or we were away
    // too long): reload the list, then carry on from the id the server sent.
    try {
      const url = list.dataset.fragment + (network ? "?network=" + encodeURIComponent(network) : "");
      const resp = await fetch(url, { credentials: "same-origin" });
      if (resp.ok) {
        const t = document.createElement("template");
        t.innerHTML = await resp.text();
        list.replaceChildren(t.content);
      }
    } catch (e) { /* keep what we have; the stream carries on */ }
  }

  // Reconnects with a doubling wait: follow.js, shared with the transcript page.
  const follower = window.hashbridgeFollow(list.dataset.stream, {
    since: list.dataset.lastId || "", params: { network: network },
    onMessage: onMessage, onReset: reset,
    onStatus: function (text) { setStatus(text === "Live" && paused ? "Paused" : text); },
  });

  pauseBtn.addEventListener("click", function () {
    paused = !paused;
    pauseBtn.setAttribute("aria-pressed", String(paused));
    pauseBtn.textContent = paused ? "Resume" : "Pause";
    setStatus(paused ? "Paused" : "Live");
    if (!paused) {
      held.forEach(apply);
      held = [];
      waitingEl.hidden = true;
    }
  });

  // For tests and for a page hidden for long: drop and resume the stream.
  window.hashbridgeLive = { connect: follower.connect, disconnect: follower.disconnect,
                            lastId: follower.lastId };
  follower.connect();
})();
