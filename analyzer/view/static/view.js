// traces view: keyboard navigation and live updates. Pages work without it; nothing here
// builds markup from strings: new rows are the server's own escaped HTML, parsed inertly.
"use strict";

(function () {
  const POLL_MS = 1000;

  function steps() {
    return Array.from(document.querySelectorAll("details.step"));
  }

  function currentIndex(list) {
    const active = document.activeElement;
    const at = list.findIndex((d) => d.contains(active));
    if (at >= 0) return at;
    const target = location.hash ? document.getElementById(location.hash.slice(1)) : null;
    return target ? list.findIndex((d) => d.contains(target)) : -1;
  }

  function focusStep(step) {
    const summary = step.querySelector("summary");
    summary.focus();
    step.scrollIntoView({ block: "nearest" });
    history.replaceState(null, "", "#" + step.id);
  }

  function moveStep(delta) {
    const list = steps();
    if (list.length > 1 || !document.querySelector("link[rel=next], link[rel=prev]")) {
      if (!list.length) return;
      const at = currentIndex(list);
      const next = at < 0 ? (delta > 0 ? 0 : list.length - 1) : at + delta;
      if (next >= 0 && next < list.length) focusStep(list[next]);
      return;
    }
    // A step's own page: the next or previous step's page.
    const link = document.querySelector(delta > 0 ? "link[rel=next]" : "link[rel=prev]");
    if (link) location.href = link.href;
  }

  function nextFinding() {
    const findings = Array.from(document.querySelectorAll("li.finding"));
    if (!findings.length) return;
    const from = document.activeElement !== document.body ? document.activeElement : null;
    const after = from
      ? findings.find(
          (f) => f !== from && from.compareDocumentPosition(f) & Node.DOCUMENT_POSITION_FOLLOWING
        )
      : null;
    const finding = after || findings[0];
    const step = finding.closest("details");
    if (step) step.open = true;
    finding.focus();
    finding.scrollIntoView({ block: "center" });
  }

  // A run's page carries its steps' rows, not their bodies: a step's body is fetched when
  // the step is opened (by a click, the keyboard, a finding or a link to it).
  async function loadBody(step) {
    const slot = step.querySelector(".step-lazy[data-body]");
    if (!slot || slot.dataset.loading) return;
    slot.dataset.loading = "yes";
    try {
      const answer = await fetch(slot.dataset.body, { credentials: "same-origin" });
      if (!answer.ok) throw new Error("step body: HTTP " + answer.status);
      const part = new DOMParser().parseFromString(await answer.text(), "text/html");
      const body = part.querySelector(".step-body");
      if (body) slot.replaceWith(document.importNode(body, true));
    } catch (error) {
      slot.dataset.loading = "";
      slot.classList.add("failed");
    }
  }

  // `toggle` does not bubble: caught on its way down instead.
  document.addEventListener(
    "toggle",
    (event) => {
      const step = event.target;
      if (step instanceof HTMLDetailsElement && step.matches("details.step") && step.open) {
        loadBody(step);
      }
    },
    true
  );

  function openLinkedStep() {
    const target = location.hash ? document.getElementById(location.hash.slice(1)) : null;
    const step = target ? target.closest("details.step") : null;
    if (step && !step.open) step.open = true;
  }
  window.addEventListener("hashchange", openLinkedStep);

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const tag = event.target.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
    if (event.key === "j") moveStep(1);
    else if (event.key === "k") moveStep(-1);
    else if (event.key === "n") nextFinding();
    else return;
    event.preventDefault();
  });

  // Live: poll the page's fingerprint; when it moves, fetch the page again and add the
  // rows it has that this one lacks, where they belong, leaving open steps open.
  function merge(fresh) {
    for (const list of document.querySelectorAll("[data-live-list]")) {
      const newer = fresh.getElementById(list.id);
      if (!newer) continue;
      let anchor = null;
      for (const child of Array.from(newer.children).reverse()) {
        const old = child.id ? document.getElementById(child.id) : null;
        if (old) {
          // A row that changed (a run that ended, a step's findings) is replaced, unless
          // the reader has it open or is on it.
          const busy = old.open || old.contains(document.activeElement);
          if (!busy && old.innerHTML !== child.innerHTML) {
            const replaced = document.importNode(child, true);
            old.replaceWith(replaced);
            anchor = replaced;
          } else {
            anchor = old;
          }
          continue;
        }
        const added = document.importNode(child, true);
        added.classList.add("new-row");
        list.insertBefore(added, anchor);
        anchor = added;
      }
    }
    for (const part of document.querySelectorAll("[data-live-replace]")) {
      const newer = fresh.getElementById(part.id);
      if (newer) part.replaceWith(document.importNode(newer, true));
    }
    for (const id of ["run-count"]) {
      const old = document.getElementById(id);
      const newer = fresh.getElementById(id);
      if (old && newer) old.textContent = newer.textContent;
    }
  }

  function follow(endpoint, since) {
    // The fingerprint the server read before this page's data: what was committed after
    // it (even before the first poll) is fetched.
    let version = since === undefined ? null : since;
    let busy = false;
    const state = document.getElementById("live-state");
    async function poll() {
      if (busy) return;
      busy = true;
      try {
        const answer = await fetch(endpoint, { cache: "no-store", credentials: "same-origin" });
        if (!answer.ok) throw new Error("live: HTTP " + answer.status);
        const now = (await answer.json()).version;
        if (version !== null && now !== version) {
          const page = await fetch(location.href, { cache: "no-store", credentials: "same-origin" });
          if (page.ok) merge(new DOMParser().parseFromString(await page.text(), "text/html"));
        }
        version = now;
        if (state) state.classList.remove("paused");
      } catch (error) {
        if (state) state.classList.add("paused");
      } finally {
        busy = false;
      }
    }
    poll();
    setInterval(poll, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    openLinkedStep();
    const endpoint = document.body.dataset.live;
    if (endpoint) follow(endpoint, document.body.dataset.liveSince);
  });
})();
