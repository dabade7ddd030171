// One job, live: the page follows the job's events stream (server-sent events; the browser
// reconnects by itself with the last event id), with no reloads.
"use strict";
(function () {
  let doc = JSON.parse(document.getElementById("job-data").textContent);
  const id = doc.id;
  const $ = name => document.getElementById(name);
  const rates = {};  // per video: [time, frames] of the first sample of the current run

  function framesDone(v) {
    if (!v.chunks_total) return v.status === "done" ? (v.frames || 0) : 0;
    return Math.round((v.frames || 0) * v.chunks_done / v.chunks_total);
  }
  function fps(i, v) {
    if (v.status !== "running" && v.status !== "pending") return rates[i] && rates[i].fps || null;
    const now = performance.now() / 1000, done = framesDone(v);
    const r = rates[i];
    if (!r || done < r.frames) { rates[i] = { t: now, frames: done, fps: null }; return null; }
    if (done > r.frames && now > r.t) r.fps = (done - r.frames) / (now - r.t);
    return r.fps;
  }

  function render() {
    const state = $("state");
    state.textContent = doc.state;
    state.className = `state state-${doc.state}`;
    document.body.dataset.state = doc.state;
    const p = NB.progress(doc);
    $("progress").style.width = `${(100 * p.fraction).toFixed(1)}%`;
    $("summary").textContent = p.text;
    $("eta").textContent = NB.eta(doc);
    const err = $("job-error");
    err.hidden = !doc.error; err.textContent = doc.error || "";
    const s = doc.settings || {};
    $("settings").textContent = Object.entries(s).filter(([, v]) => v !== null)
      .map(([k, v]) => `${k.replace(/_/g, " ")}: ${v}`).join(" · ");
    $("cancel").disabled = !(doc.state === "queued" || doc.state === "running");
    $("resume").disabled = doc.state === "queued" || doc.state === "running";
    const videos = (doc.status && doc.status.videos) || [];
    const tbody = document.querySelector("#videos tbody");
    if (!videos.length) {
      const waiting = { queued: "Waiting in the queue.", running: "Starting: listing and probing the videos…" };
      tbody.replaceChildren(NB.el("tr", { class: "empty" }, NB.el("td", { colspan: 7 },
        waiting[doc.state] || "No videos were found.")));
      return;
    }
    tbody.replaceChildren(...videos.map((v, i) => {
      const rate = fps(i, v);
      const frac = v.chunks_total ? v.chunks_done / v.chunks_total : (v.status === "done" ? 1 : 0);
      const links = v.status === "done" ? [
        NB.el("a", { href: `/jobs/${id}/videos/${i}`, class: "button" }, "Compare"), " ",
        NB.el("a", { href: `/api/jobs/${id}/videos/${i}/output?download=true`, download: "", class: "button" }, "Download")] : [];
      return NB.el("tr", { "data-video": i, class: `video-${v.status}` },
        NB.el("td", { title: v.input }, NB.baseName(v.input)),
        NB.el("td", {}, NB.el("span", { class: `state state-${v.status}` }, v.status)),
        NB.el("td", { class: "grow" }, NB.el("div", { class: "bar" },
          NB.el("div", { style: `width:${(100 * frac).toFixed(1)}%` })),
          NB.el("small", {}, `${v.chunks_done}/${v.chunks_total} chunks`)),
        NB.el("td", {}, v.frames === null ? "" : String(v.frames)),
        NB.el("td", {}, rate ? rate.toFixed(1) : ""),
        NB.el("td", { class: v.error ? "error" : "" }, v.error || v.note || ""),
        NB.el("td", { class: "links" }, ...links));
    }));
  }

  const events = new EventSource(`/api/jobs/${id}/events`);
  events.onmessage = e => { doc = JSON.parse(e.data); render(); };
  events.addEventListener("deleted", () => { events.close(); window.location.assign("/"); });

  async function act(method, path) {
    try { const out = await NB.api(method, path); if (out) { doc = out; render(); } }
    catch (e) { $("job-error").hidden = false; $("job-error").textContent = e.message; }
  }
  $("cancel").addEventListener("click", () => act("POST", `/api/jobs/${id}/cancel`));
  $("resume").addEventListener("click", () => act("POST", `/api/jobs/${id}/resume`));
  $("delete").addEventListener("click", async () => {
    if (!confirm("Delete this job and all its files?")) return;
    events.close();
    await act("DELETE", `/api/jobs/${id}`);
    window.location.assign("/");
  });
  render();
})();
