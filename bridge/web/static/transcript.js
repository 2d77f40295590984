// The transcript of a running chat, updated live from the community's stream
// (follow.js): an answer goes under its question, an answer to a question not
// yet asked opens that question's section, an edit moves a post where it now
// belongs, a delete removes it.  Where a post goes is the server's decision
// (the Q1/A1 rules, hosts, replies): the page asks /…/place/<post> for each
// change and applies the answer, one change at a time, in order.
"use strict";
(function () {
  const root = document.getElementById("transcript");
  if (!root || root.dataset.live !== "1" || !window.EventSource || !window.hashbridgeFollow) {
    return;
  }
  const statusEl = document.getElementById("live-status");
  const start = parseFloat(root.dataset.start) * 1000;
  const end = parseFloat(root.dataset.end) * 1000;
  let chain = Promise.resolve();

  function setStatus(text) {
    statusEl.textContent = text === "Live" ? "Updating live." : text;
  }

  function nodeFrom(html) {
    const t = document.createElement("template");
    t.innerHTML = html.trim();
    return t.content.firstElementChild;
  }

  function inWindow(html) {
    const time = nodeFrom(html).querySelector("time[datetime]");
    const at = time ? Date.parse(time.getAttribute("datetime")) : NaN;
    return !isNaN(at) && at >= start && at < end;
  }

  function section(number, html) {
    const found = document.getElementById("q" + number);
    if (found) return found;
    const sec = nodeFrom(html);
    const later = Array.from(root.querySelectorAll("#questions > .question"))
      .find(function (s) { return Number(s.dataset.number) > number; });
    document.getElementById("questions").insertBefore(sec, later || null);
    return sec;
  }

  function put(list, node, before) {
    const next = before ? document.getElementById("p-" + before) : null;
    if (next && next.parentNode === list) list.insertBefore(node, next);
    else list.appendChild(node);
  }

  function recount() {
    root.querySelectorAll("#questions > .question").forEach(function (sec) {
      const n = sec.querySelectorAll(".answers > li").length;
      if (!n && !sec.querySelector(".asked > li")) { sec.remove(); return; }
      sec.querySelector(".answer-count").textContent = n + (n === 1 ? " answer" : " answers");
    });
    const other = document.getElementById("other");
    other.hidden = !document.getElementById("other-posts").children.length;
  }

  async function reload() {
    // A question changed (edited, deleted): its answers may move with it.
    const resp = await fetch(root.dataset.page, { credentials: "same-origin", cache: "no-store" });
    if (!resp.ok) return;
    const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
    const fresh = doc.getElementById("transcript");
    if (fresh) root.replaceChildren.apply(root, Array.from(fresh.childNodes));
  }

  async function apply(msg) {
    const existing = document.getElementById("p-" + msg.id);
    if (msg.kind === "posted" || msg.kind === "edited") {
      if (!msg.html || (!existing && !inWindow(msg.html))) return;
    } else if (!existing) {
      return;  // a delete of a post this transcript does not show
    }
    const wasQuestion = existing && existing.closest(".asked");
    const resp = await fetch(root.dataset.place + encodeURIComponent(msg.id),
                             { credentials: "same-origin", cache: "no-store" });
    if (!resp.ok) return;
    const at = await resp.json();
    if (msg.kind !== "posted" && (wasQuestion || at.where === "question")) {
      await reload();
      return;
    }
    if (existing) existing.remove();
    const node = at.html ? nodeFrom(at.html) : null;
    if (node && msg.kind === "posted") node.classList.add("fresh");
    if (node && at.where === "question") {
      const sec = section(at.number, at.section);
      let asked = sec.querySelector(".asked");
      if (!asked) {
        asked = document.createElement("ol");
        asked.className = "posts asked";
        const placeholder = sec.querySelector(".unasked");
        if (placeholder) placeholder.replaceWith(asked);
        else sec.querySelector("h3").after(asked);
      }
      asked.replaceChildren(node);
    } else if (node && at.where === "answer") {
      put(section(at.number, at.section).querySelector(".answers"), node, at.before);
    } else if (node && at.where === "other") {
      put(document.getElementById("other-posts"), node, at.before);
    }
    document.getElementById("summary").replaceWith(nodeFrom(at.summary));
    document.getElementById("no-posts").hidden = !at.empty;
    recount();
  }

  const follower = window.hashbridgeFollow(root.dataset.stream, {
    since: root.dataset.lastId,
    onStatus: setStatus,
    onMessage: function (msg) {
      chain = chain.then(function () { return apply(msg); }).catch(function () {});
    },
    onReset: function () {
      chain = chain.then(reload).catch(function () {});
    },
  });
  // For tests and for a page hidden for long: drop and resume the stream.
  window.hashbridgeTranscript = { connect: follower.connect, disconnect: follower.disconnect,
                                  idle: function () { return chain; } };
  follower.connect();
})();
