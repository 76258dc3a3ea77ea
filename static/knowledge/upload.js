// Drag-and-drop upload for the knowledge base: posts the files to the same admin view and
// lists what happened to each one.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("upload-form");
  const zone = document.getElementById("drop-zone");
  const input = form.querySelector("input[type=file]");
  const results = document.getElementById("upload-results");

  const send = async (files) => {
    const data = new FormData();
    data.append("csrfmiddlewaretoken", form.querySelector("[name=csrfmiddlewaretoken]").value);
    for (const file of files) data.append("files", file);
    results.replaceChildren(Object.assign(document.createElement("li"), { textContent: `Uploading ${files.length} file(s)…` }));
    const response = await fetch(form.action || window.location.href, {
      method: "POST", body: data, headers: { Accept: "application/json" },
    });
    results.replaceChildren();
    if (!response.ok) {
      results.append(Object.assign(document.createElement("li"), { textContent: `Upload failed: HTTP ${response.status}` }));
      return;
    }
    for (const r of (await response.json()).results) {
      const li = document.createElement("li");
      li.textContent = `${r.ok ? "✓" : "✗"} ${r.name}: ${r.message}`;
      li.style.color = r.ok ? "#16a34a" : "#dc2626";
      results.append(li);
    }
  };

  ["dragenter", "dragover"].forEach((type) => zone.addEventListener(type, (event) => {
    event.preventDefault();
    zone.style.borderColor = "#2563eb";
  }));
  ["dragleave", "drop"].forEach((type) => zone.addEventListener(type, () => { zone.style.borderColor = "#9ca3af"; }));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer.files.length) send(event.dataTransfer.files);
  });
  form.addEventListener("submit", (event) => {
    if (!input.files.length) return;
    event.preventDefault();
    send(input.files);
  });
});
