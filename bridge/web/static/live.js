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
  const groupBox = document.getElementById("group-answers");
  let grouped = false;
  let nextSeq = 0;  // arrival order: every card gets data-seq as it arrives
  controls.hidden = false;

  function setStatus(text) { statusEl.textContent = text; }

  function numbered() {
    for (const li of list.children) li.dataset.seq = String(nextSeq++);
  }

  function localize(node) {
    if (window.hashbridgeLocalTime) window.hashbridgeLocalTime.localize(node);
  }

  function answers(n) { return n + (n === 1 ? " answer" : " answers"); }

  // Grouped: each answer (A3, or an unnumbered reply to Q3: the server marks
  // both data-qa="A3") right under its question, with the question's count;
  // everything else, and answers whose question is not on the page, in arrival
  // order.  Ungrouped: arrival order.  Nodes are moved, not copied, so screen
  // readers and keyboard order follow what is shown.
  function layout() {
    const cards = [...list.children].sort((a, b) => a.dataset.seq - b.dataset.seq);
    for (const c of list.querySelectorAll(".answer-count")) c.remove();
    for (const li of cards) li.classList.remove("grouped-answer");
    let order = cards;
    if (grouped) {
      const asked = new Map();
      for (const li of cards) {
        const q = /^Q(\d+)$/.exec(li.dataset.qa || "");
        if (q && !asked.has(q[1])) asked.set(q[1], li);
      }
      const under = new Map();
      const rest = [];
      for (const li of cards) {
        const a = /^A(\d+)$/.exec(li.dataset.qa || "");
        if (a && asked.has(a[1])) {
          if (!under.has(a[1])) under.set(a[1], []);
          under.get(a[1]).push(li);
          li.classList.add("grouped-answer");
        } else {
          rest.push(li);
        }
      }
      order = [];
      for (const li of rest) {
        order.push(li);
        const q = /^Q(\d+)$/.exec(li.dataset.qa || "");
        if (q && asked.get(q[1]) === li) {
          const got = under.get(q[1]) || [];
          const count = document.createElement("span");
          count.className = "answer-count";
          count.textContent = answers(got.length);
          const meta = li.querySelector(".meta");
          if (meta) meta.appendChild(count);
          order.push(...got);
        }
      }
    }
    order.forEach(function (li, i) {
      if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
    });
  }

  numbered();
  if (groupBox) {
    groupBox.addEventListener("change", function () {
      grouped = groupBox.checked;
      layout();
    });
  }

  function nodeFrom(html) {
    const t = document.createElement("template");
    t.innerHTML = html.trim();
    return t.content.firstElementChild;
  }

  function apply(msg) {
    const existing = document.getElementById("p-" + msg.id);
    if (msg.kind === "deleted" || msg.kind === "hidden") {
      if (existing) existing.remove();
      if (grouped) layout();
      return;
    }
    if (!msg.html) return;
    if (network && msg.network !== network) return;
    const node = nodeFrom(msg.html);
    if (!node) return;
    localize(node);
    if (existing) {
      node.dataset.seq = existing.dataset.seq;
      existing.replaceWith(node);
    } else if (msg.kind === "posted") {
      node.dataset.seq = String(nextSeq++);
      node.classList.add("fresh");
      list.appendChild(node);
      const empty = document.getElementById("empty");
      if (empty) empty.remove();
    } else {
      return;
    }
    if (grouped) layout();
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
        numbered();
        localize(list);
        if (grouped) layout();
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
