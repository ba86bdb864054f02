// The OCRFlux page: a client of the gateway's streaming POST /v1/ocr, nothing more.
//
// Model output is untrusted: Markdown is rendered by marked, then sanitised by DOMPurify
// (tables kept; scripts, event handlers and javascript: URLs removed) before it reaches the
// DOM, and the page's Content-Security-Policy forbids inline script besides (with Trusted
// Types, so no HTML string reaches innerHTML without passing DOMPurify).
"use strict";

(() => {
  const KEY_STORAGE = "ocrflux-api-key";
  const PREVIEWABLE_IMAGES = ["image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp"];
  const $ = (id) => document.getElementById(id);

  const ui = {
    drop: $("drop"), file: $("file"), pages: $("pages"), tableFormat: $("table-format"),
    skipMerge: $("skip-merge"), keyForm: $("key-form"), key: $("key"), status: $("status"),
    bar: $("bar"), error: $("error"), toolbar: $("toolbar"), copy: $("copy"),
    download: $("download"), stop: $("stop"), source: $("source"), out: $("pages-out"),
  };

  let current = null; // {file, url, controller, result, rows: Map(index -> row)}
  let pendingFile = null; // a file waiting for an API key

  // --- rendering -------------------------------------------------------------------------

  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A") { // links from a document open elsewhere, without our context
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer");
    }
  });

  // OCRFlux writes checkboxes as "[√]" and "[ ]": show both as the text they are, not "[ ]"
  // alone as a form control (GFM's task lists).
  marked.use({ renderer: { checkbox: (token) => (token.checked ? "[x] " : "[ ] ") } });

  function renderMarkdown(markdown) {
    const html = marked.parse(markdown, { gfm: true, async: false });
    return DOMPurify.sanitize(html, {
      USE_PROFILE: { html: true },
      // OCRFlux returns no images: an <img> in its text could only fetch something.
      FORBID_TAGS: ["img", "svg", "math", "style", "form", "input", "button", "textarea", "select"],
      FORBID_ATTR: ["style"],
      RETURN_TRUSTED_TYPE: true,
    });
  }

  function pageRow(index) {
    let row = current.rows.get(index);
    if (row) return row;
    row = document.createElement("article");
    row.className = "page";
    row.dataset.index = String(index);
    const preview = document.createElement("div");
    preview.className = "preview";
    preview.append(previewOf(current.file, current.url, index));
    const text = document.createElement("div");
    text.className = "text";
    const heading = document.createElement("h2");
    heading.textContent = `Page ${index + 1}`;
    const rendered = document.createElement("div");
    rendered.className = "markdown";
    const source = document.createElement("pre");
    source.className = "source";
    text.append(heading, rendered, source);
    row.append(preview, text);
    // Keep rows in page order whatever order they arrive in.
    const later = [...ui.out.children].find((el) => Number(el.dataset.index) > index);
    ui.out.insertBefore(row, later || null);
    current.rows.set(index, row);
    return row;
  }

  function previewOf(file, url, index) {
    // The browser draws the page itself: its own PDF viewer at #page=N, or the image.
    if (isPdf(file)) {
      const frame = document.createElement("iframe");
      frame.src = `${url}#page=${index + 1}&toolbar=0&navpanes=0&view=Fit`;
      frame.title = `Page ${index + 1} of ${file.name}`;
      frame.loading = "lazy";
      return frame;
    }
    if (PREVIEWABLE_IMAGES.includes(file.type)) {
      const img = document.createElement("img");
      img.src = url;
      img.alt = `Page ${index + 1} of ${file.name}`;
      return img;
    }
    const note = document.createElement("p");
    note.className = "no-preview";
    note.textContent = "This browser cannot show this file type; the text is on the right.";
    return note;
  }

  function showPage(page, fallback) {
    const row = pageRow(page.index);
    row.classList.toggle("fallback", Boolean(fallback));
    const markdown = page.markdown || "";
    row.querySelector(".markdown").innerHTML = fallback
      ? renderMarkdown("*This page could not be read.*")
      : renderMarkdown(markdown);
    row.querySelector(".source").textContent = markdown;
  }

  // --- messages ---------------------------------------------------------------------------

  function say(text) { ui.status.textContent = text; }

  function fail(text) {
    ui.error.textContent = text;
    ui.error.hidden = false;
    say("");
  }

  function errorText(status, body) {
    const message = body && body.error && body.error.message;
    if (status === 413) return `The file is too large for this gateway: ${message || "HTTP 413"}`;
    if (message) return `The gateway refused the document: ${message} (HTTP ${status})`;
    return `The gateway answered HTTP ${status}.`;
  }

  // --- the request ------------------------------------------------------------------------

  function isPdf(file) {
    return file.type === "application/pdf" || /\.pdf$/i.test(file.name);
  }

  function start(file) {
    if (current) {
      if (current.controller) current.controller.abort();
      URL.revokeObjectURL(current.url);
    }
    current = { file, url: URL.createObjectURL(file), controller: null, result: null,
      rows: new Map() };
    ui.out.replaceChildren();
    ui.error.hidden = true;
    ui.keyForm.hidden = true;
    ui.toolbar.hidden = false;
    ui.copy.disabled = ui.download.disabled = true;
    ui.stop.hidden = false;
    ui.bar.hidden = false;
    ui.bar.removeAttribute("value");
    say(`Sending ${file.name}…`);
    run(current).catch((err) => {
      if (err.name === "AbortError") return;
      fail(err instanceof TypeError
        ? "Cannot reach the gateway: is it still running?"
        : `Something went wrong: ${err.message}`);
    }).finally(() => {
      if (current && current.controller) current.controller = null;
      ui.bar.hidden = true;
      ui.stop.hidden = true;
    });
  }

  async function run(job) {
    const form = new FormData();
    form.append("file", job.file, job.file.name);
    form.append("stream", "true");
    if (ui.pages.value.trim()) form.append("pages", ui.pages.value.trim());
    form.append("table_format", ui.tableFormat.value);
    if (ui.skipMerge.checked) form.append("skip_cross_page_merge", "true");
    const headers = { Accept: "text/event-stream" };
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (key) headers.Authorization = `Bearer ${key}`;
    job.controller = new AbortController();
    const response = await fetch("v1/ocr", {
      method: "POST", body: form, headers, signal: job.controller.signal,
    });
    if (response.status === 401) {
      sessionStorage.removeItem(KEY_STORAGE);
      pendingFile = job.file;
      ui.keyForm.hidden = false;
      ui.key.focus();
      say(key ? "That API key was refused; enter another." : "");
      return;
    }
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      fail(errorText(response.status, body));
      return;
    }
    for await (const event of serverEvents(response.body)) {
      if (job !== current) return;
      handle(job, event);
    }
    if (!job.result && ui.error.hidden) fail("The gateway ended the stream before the result.");
  }

  function handle(job, event) {
    const data = JSON.parse(event.data);
    if (event.name === "page") {
      showPage(data, data.fallback);
      ui.bar.max = data.total;
      ui.bar.value = data.done;
      say(`Read page ${data.done} of ${data.total}…`);
    } else if (event.name === "merge") {
      say("Joining paragraphs and tables split across pages…");
    } else if (event.name === "result") {
      job.result = data;
      const fallback = new Set(data.fallback_pages || []);
      for (const page of data.pages) showPage(page, fallback.has(page.index));
      const n = data.pages.length;
      const unread = fallback.size ? `, ${fallback.size} could not be read` : "";
      say(`Done: ${n} page${n === 1 ? "" : "s"}${unread}.`);
      ui.copy.disabled = ui.download.disabled = false;
    } else if (event.name === "error") {
      fail(`The document could not be converted: ${data.error && data.error.message}`);
    }
  }

  // Server-sent events from a fetch() body (EventSource cannot POST).
  async function* serverEvents(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) yield { name, data: data.join("\n") };
      }
    }
  }

  // --- buttons ----------------------------------------------------------------------------

  function markdownName() {
    return `${current.file.name.replace(/\.[^.]*$/, "") || "document"}.md`;
  }

  async function copyMarkdown() {
    const text = current.result.document_text;
    try {
      await navigator.clipboard.writeText(text); // needs https or localhost
    } catch {
      const area = document.createElement("textarea");
      area.value = text;
      document.body.append(area);
      area.select();
      const copied = document.execCommand("copy");
      area.remove();
      if (!copied) {
        fail("The browser did not allow copying: use Download, or Show Markdown source.");
        return;
      }
    }
    say("Markdown copied.");
  }

  function downloadMarkdown() {
    const blob = new Blob([current.result.document_text], { type: "text/markdown" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = markdownName();
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }

  // --- wiring -----------------------------------------------------------------------------

  ui.file.addEventListener("change", () => {
    if (ui.file.files.length) start(ui.file.files[0]);
    ui.file.value = ""; // choosing the same file again starts again
  });
  for (const name of ["dragenter", "dragover"]) {
    ui.drop.addEventListener(name, (e) => { e.preventDefault(); ui.drop.classList.add("over"); });
  }
  ui.drop.addEventListener("dragleave", () => ui.drop.classList.remove("over"));
  ui.drop.addEventListener("drop", (e) => {
    e.preventDefault();
    ui.drop.classList.remove("over");
    if (e.dataTransfer.files.length) start(e.dataTransfer.files[0]);
  });
  // A file dropped beside the target must not replace the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());

  ui.keyForm.addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY_STORAGE, ui.key.value.trim());
    ui.key.value = "";
    if (pendingFile) start(pendingFile);
  });
  ui.stop.addEventListener("click", () => {
    if (current && current.controller) current.controller.abort();
    say("Stopped.");
  });
  ui.copy.addEventListener("click", () => copyMarkdown());
  ui.download.addEventListener("click", downloadMarkdown);
  ui.source.addEventListener("change", () => {
    ui.out.classList.toggle("show-source", ui.source.checked);
  });
})();
