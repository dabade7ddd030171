// The job list and the new-job form: drag-and-drop upload with progress, server-side input.
"use strict";
(function () {
  const form = document.getElementById("new-job");
  const files = document.getElementById("files");
  const drop = document.getElementById("drop");
  const chosen = document.getElementById("chosen");
  const message = document.getElementById("form-message");
  const bar = form.querySelector(".upload-bar");
  const barFill = document.getElementById("upload-progress");
  const submit = document.getElementById("submit");
  let picked = [];

  function showPicked() {
    chosen.replaceChildren(...picked.map(f => NB.el("li", {}, f.name,
      NB.el("small", {}, ` ${(f.size / 1048576).toFixed(1)} MB`))));
  }
  files.addEventListener("change", () => { picked = Array.from(files.files); showPicked(); });
  for (const name of ["dragenter", "dragover"]) drop.addEventListener(name, e => {
    e.preventDefault(); drop.classList.add("over"); });
  for (const name of ["dragleave", "drop"]) drop.addEventListener(name, e => {
    e.preventDefault(); drop.classList.remove("over"); });
  drop.addEventListener("drop", e => {
    picked = picked.concat(Array.from(e.dataTransfer.files)); showPicked(); });

  const serverSource = document.getElementById("server-source");
  const uploadSource = document.getElementById("upload-source");
  function source() {
    const checked = form.querySelector("input[name=source]:checked");
    return checked ? checked.value : "upload";
  }
  form.querySelectorAll("input[name=source]").forEach(r => r.addEventListener("change", () => {
    const server = source() === "server";
    serverSource.hidden = !server; uploadSource.hidden = server;
  }));

  function settings() {
    const out = {};
    const words = ["model", "codec", "hdr"];
    for (const name of ["model", "temporal_radius", "strength", "codec", "crf", "hdr", "chunk_frames"]) {
      const value = form.elements[name].value.trim();
      if (value !== "") out[name] = words.includes(name) ? value : Number(value);
    }
    for (const name of ["lossless", "previews", "strict"]) out[name] = form.elements[name].checked;
    return out;
  }
  function fail(text) { message.textContent = text; message.className = "message error"; submit.disabled = false; }
  function started(doc) { window.location.assign(`/jobs/${doc.id}`); }
  function detail(xhr) {
    try { const d = JSON.parse(xhr.responseText).detail;
          return typeof d === "string" ? d : d.map(x => `${x.loc.slice(-1)[0]}: ${x.msg}`).join("; "); }
    catch (e) { return `${xhr.status} ${xhr.statusText}`; }
  }

  form.addEventListener("submit", e => {
    e.preventDefault();
    message.textContent = ""; message.className = "message";
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/jobs");
    xhr.onload = () => xhr.status === 201 ? started(JSON.parse(xhr.responseText)) : fail(detail(xhr));
    xhr.onerror = () => fail("the upload was interrupted");
    if (source() === "server") {
      const input = document.getElementById("server-input").value.trim();
      if (!input) return fail("name a folder, file or bucket URL on the server");
      xhr.setRequestHeader("Content-Type", "application/json");
      submit.disabled = true;
      xhr.send(JSON.stringify(Object.assign({ input }, settings())));
      return;
    }
    if (!picked.length) return fail("choose or drop at least one video");
    const body = new FormData();
    for (const f of picked) body.append("file", f, f.name);
    for (const [k, v] of Object.entries(settings())) body.append(k, String(v));
    bar.hidden = false; submit.disabled = true;
    xhr.upload.onprogress = ev => { if (ev.lengthComputable) barFill.style.width = `${100 * ev.loaded / ev.total}%`; };
    xhr.send(body);
  });

  // The list: refreshed from the API every 2 s (JSON only; the page itself never reloads).
  const tbody = document.querySelector("#jobs tbody");
  function row(doc) {
    const p = NB.progress(doc);
    const videos = doc.status && doc.status.progress ? doc.status.progress.videos_total : "";
    return NB.el("tr", { "data-job": doc.id, class: `state-row-${doc.state}` },
      NB.el("td", {}, NB.el("a", { href: `/jobs/${doc.id}` }, NB.el("code", {}, doc.id))),
      NB.el("td", {}, NB.when(doc.created)),
      NB.el("td", {}, String(videos)),
      NB.el("td", {}, NB.el("span", { class: `state state-${doc.state}` }, doc.state)),
      NB.el("td", { class: "grow" }, NB.el("div", { class: "bar" },
        NB.el("div", { style: `width:${(100 * p.fraction).toFixed(1)}%` })),
        NB.el("small", {}, p.text), doc.error ? NB.el("small", { class: "error" }, " " + doc.error) : null),
      NB.el("td", {}, NB.eta(doc)));
  }
  async function refresh() {
    try {
      const docs = await NB.api("GET", "/api/jobs");
      tbody.replaceChildren(...(docs.length ? docs.map(row)
        : [NB.el("tr", { class: "empty" }, NB.el("td", { colspan: 6 }, "No jobs yet."))]));
    } catch (e) { /* keep the last list; the next refresh tries again */ }
    setTimeout(refresh, 2000);
  }
  refresh();
})();
