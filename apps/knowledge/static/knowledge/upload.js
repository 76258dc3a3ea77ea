// The knowledge base's upload page (admin/knowledge/document/upload.html): sends the files in
// small batches with a progress bar, then gives each file its own line: queued or refused with
// the server's reason, and for a queued one its document's status (polled from the status view)
// until it is ready or failed. The server answers this script in JSON only, errors included.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("upload-form");
  const zone = document.getElementById("drop-zone");
  const input = form.querySelector("input[type=file]");
  const button = document.getElementById("upload-button");
  const list = document.getElementById("upload-results");
  const summary = document.getElementById("upload-summary");
  const statusUrl = form.dataset.statusUrl;
  // Files per request: small batches show progress sooner and stay under the server's file count limit.
  const perRequest = Math.max(1, Math.min(10, Number(form.dataset.maxFiles) || 10));
  const FINAL = new Set(["ready", "failed"]);
  const lines = new Map(); // document id -> line, while its status is followed
  let polling = null;

  const element = (tag, props = {}, ...children) => {
    const node = Object.assign(document.createElement(tag), props);
    node.append(...children);
    return node;
  };
  const size = (bytes) => (bytes < 1024 * 1024 ? `${Math.ceil(bytes / 1024)} KB` : `${(bytes / 1024 / 1024).toFixed(1)} MB`);

  // One line per file: its name, a progress bar while it uploads, then what became of it.
  const newLine = (file) => {
    const progress = element("progress", { max: file.size || 1, value: 0 });
    const state = element("span", { className: "knowledge-upload-state" }, "waiting to upload");
    const line = element("li", { className: "knowledge-upload" },
      element("span", { className: "knowledge-upload-name" }, file.name),
      element("span", { className: "knowledge-help" }, size(file.size)), progress, state);
    line.dataset.state = "waiting";
    line.file = file;
    line.progress = progress;
    line.stateText = state;
    list.append(line);
    return line;
  };
  const show = (line, state, text, url) => {
    line.dataset.state = state;
    line.stateText.className = `knowledge-upload-state knowledge-state-${state}`;
    line.stateText.textContent = text;
    line.querySelector("a.knowledge-open")?.remove();
    if (url) line.append(element("a", { href: url, className: "knowledge-open" }, "open document"));
  };

  // POST one batch; resolves to the parsed JSON (or {error}) whatever happens on the wire.
  const post = (batch) => new Promise((resolve) => {
    const data = new FormData();
    data.append("csrfmiddlewaretoken", form.querySelector("[name=csrfmiddlewaretoken]").value);
    for (const line of batch) data.append("files", line.file);
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("Accept", "application/json");
    request.responseType = "json";
    request.upload.addEventListener("progress", (event) => {
      // The bytes sent cover the files in order: fill each file's bar from the running total.
      let before = 0;
      for (const line of batch) {
        line.progress.value = Math.max(0, Math.min(line.file.size, event.loaded - before));
        before += line.file.size;
        if (line.dataset.state === "waiting") show(line, "uploading", "uploading…");
      }
    });
    request.addEventListener("load", () => {
      const body = request.response;
      if (body && typeof body === "object") resolve(body);
      else resolve({ error: `Unexpected answer from the server (HTTP ${request.status}).` });
    });
    request.addEventListener("error", () => resolve({ error: "The upload did not reach the server (network error)." }));
    request.addEventListener("abort", () => resolve({ error: "The upload was interrupted." }));
    request.send(data);
  });

  const place = (batch, results) => {
    // Results come one per file; a name may repeat within a batch, so each takes the first free line.
    const free = [...batch];
    for (const result of results) {
      const at = free.findIndex((line) => line.file.name === result.name);
      if (at < 0) continue;
      const [line] = free.splice(at, 1);
      line.progress.remove();
      if (result.ok) {
        show(line, "queued", "queued: waiting for a worker", result.url);
        lines.set(result.id, line);
      } else {
        show(line, "refused", `refused: ${result.message}`, result.url);
      }
    }
    for (const line of free) {
      line.progress.remove();
      show(line, "refused", "refused: no answer about this file from the server");
    }
  };

  const follow = async () => {
    const ids = [...lines.keys()];
    if (!ids.length) {
      polling = null;
      return;
    }
    let delay = 1500;
    try {
      const response = await fetch(`${statusUrl}?ids=${ids.join(",")}`, { headers: { Accept: "application/json" } });
      const body = await response.json();
      if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
      for (const documentStatus of body.documents) {
        const line = lines.get(documentStatus.id);
        const { status, error, chunks_done: done, chunk_count: total, url } = documentStatus;
        if (status === "pending") show(line, "pending", error ? `pending (${error})` : "pending: waiting for a worker", url);
        else if (status === "processing") show(line, "processing", total ? `processing: ${done}/${total} chunks embedded` : "processing: extracting text…", url);
        else if (status === "ready") show(line, "ready", `ready: ${total} chunks searchable`, url);
        else show(line, "failed", `failed: ${error || "no reason recorded"}`, url);
        if (FINAL.has(status)) lines.delete(documentStatus.id);
      }
      for (const id of body.missing) {
        show(lines.get(id), "failed", "the document was deleted");
        lines.delete(id);
      }
      summary.textContent = lines.size ? `Processing ${lines.size} document(s)…` : "All uploaded documents are processed.";
    } catch (problem) {
      summary.textContent = `Could not read the documents' status (${problem.message}); trying again.`;
      delay = 5000;
    }
    polling = setTimeout(follow, delay);
  };

  const send = async (files) => {
    if (!files.length) return;
    button.disabled = true;
    const all = [...files].map(newLine);
    summary.textContent = `Uploading ${all.length} file(s)…`;
    for (let start = 0; start < all.length; start += perRequest) {
      const batch = all.slice(start, start + perRequest);
      const body = await post(batch);
      if (body.error || !Array.isArray(body.results)) {
        for (const line of batch) {
          line.progress.remove();
          show(line, "refused", `not uploaded: ${body.error || "unexpected answer from the server"}`);
        }
      } else {
        place(batch, body.results);
      }
    }
    const refused = all.filter((line) => line.dataset.state === "refused").length;
    summary.textContent = `${all.length - refused} queued, ${refused} refused.`;
    button.disabled = false;
    form.reset();
    if (!polling) polling = setTimeout(follow, 500);
  };

  ["dragenter", "dragover"].forEach((type) => zone.addEventListener(type, (event) => {
    event.preventDefault();
    zone.classList.add("knowledge-over");
  }));
  ["dragleave", "drop"].forEach((type) => zone.addEventListener(type, () => zone.classList.remove("knowledge-over")));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    send(event.dataTransfer.files);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!input.files.length) {
      summary.textContent = "Choose one or more files first.";
      return;
    }
    send(input.files);
  });
});
