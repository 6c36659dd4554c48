// Datafly Signal management UI: small progressive enhancements over server-rendered pages.
// Every state-changing call sends the session's CSRF token in the X-CSRF-Token header.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

async function api(method, url, body) {
  const init = { method, headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(url, init);
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (res.status === 401 && !url.endsWith("/api/login")) {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
  }
  if (!res.ok) {
    const err = new Error((data && data.error) || res.statusText);
    err.problems = (data && data.problems) || [];
    err.status = res.status;
    throw err;
  }
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function toast(message, tone = "") {
  const box = $("#toasts");
  if (!box) return;
  const t = el("div", { class: "toast " + tone, role: "status" }, message);
  box.append(t);
  setTimeout(() => t.remove(), 5000);
}

function toastAfterReload(message) {
  sessionStorage.setItem("datafly-toast", message);
}

function showErrors(box, err) {
  if (!box) { toast(err.message, "bad"); return; }
  box.hidden = false;
  box.replaceChildren(el("b", {}, err.message));
  if (err.problems && err.problems.length) {
    box.append(el("ul", {}, err.problems.map((p) => el("li", {}, p))));
  }
  box.scrollIntoView({ block: "nearest", behavior: "smooth" });
}

const pretty = (v) => JSON.stringify(v, null, 2);
const clock = (at) => new Date(at * 1000).toLocaleTimeString();
// label and tone of every outcome: datafly/outcomes.py, given to every page as JSON
const OUTCOME = (() => {
  try { return JSON.parse(document.getElementById("outcome-view").textContent); } catch (e) { return {}; }
})();
function badge(outcome) {
  const [label, tone] = OUTCOME[outcome] || [outcome, "muted"];
  return el("span", { class: "badge " + tone, "data-outcome": outcome }, label);
}

// ---------------------------------------------------------------------------------------- pages
const pages = {};

// Where to go after logging in: a path on this origin only, else "/". The server checks `next`
// too; this is the second line (no backslash, control character or space, no "//", no scheme).
function sameOriginPath(target) {
  if (typeof target !== "string" || !/^\/(?![\/\\])/.test(target) || /[\\\x00-\x20\x7f-\x9f]/.test(target)) return "/";
  let url;
  try { url = new URL(target, location.origin); } catch (e) { return "/"; }
  if (url.origin !== location.origin) return "/";
  return url.pathname + url.search + url.hash;
}

pages.login = () => {
  const form = $("#login-form");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const error = $("#login-error");
    error.hidden = true;
    try {
      await api("POST", "/api/login", { username: form.username.value, password: form.password.value });
      location.href = sameOriginPath(form.dataset.next);
    } catch (err) {
      error.textContent = err.status === 401 ? "Wrong user name or password." : err.message;
      error.hidden = false;
    }
  });
};

function readIntegrationForm(form) {
  const body = { settings: {} };
  const preset = $('input[name="preset"]:checked', form);
  if (preset) body.preset = preset.value;
  for (const input of $$('[name^="settings."]', form)) {
    const name = input.name.slice("settings.".length);
    const kind = input.dataset.kind;
    if (kind === "boolean") body.settings[name] = input.checked;
    else if (kind === "integer") body.settings[name] = input.value === "" ? null : Number(input.value);
    else if (kind === "mapping") {
      if (input.value.trim() === "") body.settings[name] = null;
      else {
        try { body.settings[name] = JSON.parse(input.value); } catch (e) {
          throw Object.assign(new Error("The form has problems"), { problems: [`settings.${name}: not valid JSON`] });
        }
      }
    } else if (input.dataset.secret && input.value === "") {
      // blank secret while editing: keep the stored one
    } else body.settings[name] = input.value.trim();
  }
  body.consent = $$('input[name="consent"]:checked', form).map((i) => i.value);
  body.sources = $("#all-sources", form).checked ? null : $$('input[name="sources"]:checked', form).map((i) => i.value);
  body.endpoint = $("#endpoint", form).value.trim() || null;
  return body;
}

pages["integration-form"] = () => {
  const form = $("#integration-form");
  const errors = $("#form-errors");
  const all = $("#all-sources");
  if (all) all.addEventListener("change", () => { $("#source-choices").hidden = all.checked; });
  const addConsent = $("#consent-add");
  if (addConsent) addConsent.addEventListener("click", () => {
    const input = $("#consent-other");
    const value = input.value.trim();
    if (!value) return;
    $("#consent-choices").append(el("label", { class: "check pill" },
      el("input", { type: "checkbox", name: "consent", value, checked: true }), " " + value));
    input.value = "";
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    errors.hidden = true;
    const save = $("#save");
    save.disabled = true;
    try {
      const body = readIntegrationForm(form);
      let saved;
      if (form.dataset.mode === "new") {
        body.vendor = form.dataset.vendor;
        body.id = $("#integration-id").value.trim() || undefined;
        if (body.sources === null) delete body.sources;
        saved = await api("POST", "/api/integrations", body);
        toastAfterReload(`Saved. ${saved.id} is delivering events.`);
      } else {
        saved = await api("PATCH", "/api/integrations/" + encodeURIComponent(form.dataset.id), body);
        toastAfterReload("Saved. The integration restarted with the new settings.");
      }
      location.href = "/integrations/" + encodeURIComponent(saved.id);
    } catch (err) {
      showErrors(errors, err);
    } finally {
      save.disabled = false;
    }
  });
  const toggle = $("#toggle-enabled");
  if (toggle) toggle.addEventListener("click", async () => {
    const enabled = toggle.dataset.enabled !== "true";
    try {
      await api("PATCH", "/api/integrations/" + encodeURIComponent(form.dataset.id), { enabled });
      toastAfterReload(enabled ? "Enabled." : "Disabled: events are no longer routed to it.");
      location.reload();
    } catch (err) { toast(err.message, "bad"); }
  });
  const del = $("#delete-integration");
  if (del) del.addEventListener("click", async () => {
    if (!confirm(`Delete ${form.dataset.id}? Its queued events are no longer delivered.`)) return;
    try {
      await api("DELETE", "/api/integrations/" + encodeURIComponent(form.dataset.id));
      toastAfterReload(`Deleted ${form.dataset.id}.`);
      location.href = "/integrations";
    } catch (err) { toast(err.message, "bad"); }
  });
};

pages.mappings = () => {
  const data = JSON.parse($("#page-data").textContent);
  const tbody = $("#mapping-table tbody");
  const addRow = (name = "", value = "") => {
    const row = el("tr", {},
      el("td", {}, el("input", { class: "map-event", value: name, placeholder: "Order Completed", disabled: data.locked })),
      el("td", {}, el("input", { class: "map-value", value, placeholder: "purchase", disabled: data.locked })),
      el("td", { class: "right" }, data.locked ? "" : el("button", {
        class: "btn small danger", type: "button", title: "Stop sending this event", onclick: () => row.remove(),
      }, "Remove")));
    tbody.append(row);
  };
  const fill = (mapping) => {
    tbody.replaceChildren();
    for (const [k, v] of Object.entries(mapping)) addRow(k, v);
  };
  const current = () => {
    const mapping = {};
    for (const row of $$("tr", tbody)) {
      const name = $(".map-event", row).value.trim();
      const value = $(".map-value", row).value.trim();
      if (name && value) mapping[name] = value;
    }
    return mapping;
  };
  fill(data.mapping);

  // field sources: vendor field -> event path, "=constant", or null (remove the field)
  const fieldBody = $("#fields-table tbody");
  const fieldsEmpty = () => { $("#fields-empty").hidden = fieldBody.children.length > 0; };
  const addField = (name = "", source = "") => {
    const removed = source === null;
    const path = el("input", { class: "field-source", value: removed ? "" : source, placeholder: "properties.total or =web",
      disabled: data.locked || removed });
    const drop = el("input", { type: "checkbox", class: "field-remove", checked: removed, disabled: data.locked,
      title: "Do not send this field", onchange: () => { path.disabled = drop.checked; } });
    const row = el("tr", {},
      el("td", {}, el("input", { class: "field-name", value: name, placeholder: "uk", list: "vendor-fields", disabled: data.locked })),
      el("td", {}, path),
      el("td", {}, drop),
      el("td", { class: "right" }, data.locked ? "" : el("button", {
        class: "btn small danger", type: "button", title: "Back to the standard source",
        onclick: () => { row.remove(); fieldsEmpty(); },
      }, "Delete")));
    fieldBody.append(row);
    fieldsEmpty();
  };
  for (const [k, v] of Object.entries(data.fields || {})) addField(k, v);
  const currentFields = () => {
    const fields = {};
    for (const row of $$("tr", fieldBody)) {
      const name = $(".field-name", row).value.trim();
      if (!name) continue;
      if ($(".field-remove", row).checked) fields[name] = null;
      else fields[name] = $(".field-source", row).value.trim();
    }
    return fields;
  };

  const on = (id, fn) => { const b = $(id); if (b) b.addEventListener("click", fn); };
  on("#add-row", () => addRow());
  on("#add-field", () => addField());
  on("#reset-preset", () => fill(data.preset_events));
  on("#save-mapping", async () => {
    try {
      await api("PATCH", "/api/integrations/" + encodeURIComponent(data.id), { mapping: current(), fields: currentFields() });
      toast("Mappings saved.");
    } catch (err) { toast(err.message + (err.problems.length ? ": " + err.problems.join("; ") : ""), "bad"); }
  });
  on("#run-preview", async () => {
    const box = $("#preview-result");
    box.hidden = false;
    let event;
    try { event = JSON.parse($("#sample-event").value); } catch (e) {
      box.replaceChildren(el("div", { class: "error-box" }, "The sample event is not valid JSON: " + e.message));
      return;
    }
    try {
      const result = await api("POST", `/api/integrations/${encodeURIComponent(data.id)}/preview`, { event, mapping: current(), fields: currentFields() });
      const parts = [el("div", {}, badge(result.outcome), " ", result.mapping ? el("span", {}, "mapped to ", el("code", {}, result.mapping)) : "", " ", result.reason || "")];
      if (result.request) {
        const r = result.request;
        parts.push(el("pre", { class: "code request", id: "preview-request" },
          `${r.method} ${r.url}\n` + Object.entries(r.headers).map(([k, v]) => `${k}: ${v}`).join("\n") +
          (r.body ? "\n\n" + (() => { try { return pretty(JSON.parse(r.body)); } catch (e) { return r.body; } })() : "")));
      }
      box.replaceChildren(...parts);
    } catch (err) {
      box.replaceChildren(el("div", { class: "error-box" }, err.message,
        err.problems && err.problems.length ? el("ul", {}, err.problems.map((p) => el("li", {}, p))) : ""));
    }
  });
};

pages.sources = () => {
  const form = $("#source-form");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("#source-errors").hidden = true;
    const origins = form.origins.value.split(/[\s,]+/).filter(Boolean);
    try {
      await api("POST", "/api/sources", { id: form.id.value.trim(), origins });
      toastAfterReload("Source created. Paste its snippet into your pages.");
      location.reload();
    } catch (err) { showErrors($("#source-errors"), err); }
  });
  for (const b of $$("[data-rotate]")) b.addEventListener("click", async () => {
    if (!confirm(`Rotate the key of ${b.dataset.rotate}? The old key stops working at once: update your pages.`)) return;
    try { await api("POST", `/api/sources/${encodeURIComponent(b.dataset.rotate)}/rotate`); toastAfterReload("New key issued."); location.reload(); }
    catch (err) { toast(err.message, "bad"); }
  });
  for (const b of $$("[data-revoke]")) b.addEventListener("click", async () => {
    if (!confirm(`Revoke ${b.dataset.revoke}? Events sent with its key are refused from now on.`)) return;
    try { await api("DELETE", `/api/sources/${encodeURIComponent(b.dataset.revoke)}`); toastAfterReload("Source revoked."); location.reload(); }
    catch (err) { toast(err.message, "bad"); }
  });
  for (const b of $$("[data-copy]")) b.addEventListener("click", async () => {
    const text = $("[data-snippet]", b.parentElement).textContent;
    try { await navigator.clipboard.writeText(text); toast("Snippet copied."); } catch (e) { toast("Select the snippet and copy it.", "bad"); }
  });
};

pages["dead-letters"] = () => {
  const act = async (fn, message) => {
    try { const r = await fn(); toastAfterReload(message(r)); location.reload(); } catch (err) { toast(err.message, "bad"); }
  };
  for (const b of $$("[data-replay]")) b.addEventListener("click", () =>
    act(() => api("POST", `/api/dead-letters/${b.dataset.replay}/replay`), () => "Replayed: it is back in the queue."));
  for (const b of $$("[data-discard]")) b.addEventListener("click", () =>
    act(() => api("DELETE", `/api/dead-letters/${b.dataset.discard}`), () => "Discarded."));
  const all = $("#replay-all");
  if (all) all.addEventListener("click", () => act(
    () => api("POST", "/api/dead-letters/replay", all.dataset.integration ? { integration: all.dataset.integration } : { all: true }),
    (r) => `Replayed ${r.replayed} dead letter(s).`));
  const discardAll = $("#discard-all");
  if (discardAll) discardAll.addEventListener("click", () => {
    if (!confirm("Discard these dead letters for good?")) return;
    act(() => api("POST", "/api/dead-letters/discard", discardAll.dataset.integration ? { integration: discardAll.dataset.integration } : { all: true }),
      (r) => `Discarded ${r.discarded} dead letter(s).`);
  });
};

pages.settings = () => {
  $("#token-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const body = { name: ev.target.name.value.trim() };
      const days = ev.target.expires_in_days.value;
      if (days) body.expires_in_days = Number(days);
      const created = await api("POST", "/api/tokens", body);
      $("#new-token").hidden = false;
      $("#new-token-value").textContent = created.token;
    } catch (err) { toast(err.message, "bad"); }
  });
  for (const b of $$("[data-revoke-token]")) b.addEventListener("click", async () => {
    if (!confirm("Revoke this token? Scripts using it get 401 from now on.")) return;
    try { await api("DELETE", "/api/tokens/" + b.dataset.revokeToken); toastAfterReload("Token revoked."); location.reload(); }
    catch (err) { toast(err.message, "bad"); }
  });
  $("#password-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("#password-errors").hidden = true;
    try {
      const done = await api("POST", "/api/password", { current_password: ev.target.current_password.value, new_password: ev.target.new_password.value });
      ev.target.reset();
      const r = done.revoked || { sessions: 0, tokens: 0 };
      toastAfterReload(`Password changed. Ended ${r.sessions} other session(s) and revoked ${r.tokens} API token(s).`);
      location.reload();
    } catch (err) { showErrors($("#password-errors"), err); }
  });
};

// --------------------------------------------------------------------------------- debugger
pages.debugger = () => {
  const events = new Map(); // message id -> {stages, name, source, at}
  const tbody = $("#event-list tbody");
  const filters = $("#debug-filters");
  const state = $("#live-state");
  let paused = false;
  let selected = null;
  const setState = (s, text) => { state.dataset.state = s; $("span", state).textContent = text; };
  const params = new URLSearchParams(location.search);
  for (const [k, v] of params) if (filters.elements[k]) filters.elements[k].value = v;

  const outcomeOf = (stage) => stage.outcome || (stage.stage === "consent" ? stage.decision : null);
  const matches = (entry) => {
    const f = Object.fromEntries(new FormData(filters));
    if (f.source && entry.source !== f.source) return false;
    if (f.event && !(entry.name || "").toLowerCase().includes(f.event.toLowerCase())) return false;
    const stages = entry.stages.filter((s) => !f.integration || !s.integration_id || s.integration_id === f.integration);
    if (f.integration && !entry.stages.some((s) => s.integration_id === f.integration)) return false;
    if (f.outcome && !stages.some((s) => outcomeOf(s) === f.outcome)) return false;
    return true;
  };
  const integrationsCell = (entry) => {
    const latest = new Map();
    for (const s of entry.stages) {
      if (!s.integration_id) continue;
      const o = outcomeOf(s);
      if (o) latest.set(s.integration_id, o);
    }
    if (!latest.size) return [el("span", { class: "muted small" }, entry.stages.some((s) => s.stage === "duplicate") ? "duplicate" : "no integration")];
    return [...latest].map(([iid, o]) => el("span", { class: "nowrap", "data-integration": iid }, iid + " ", badge(o), " "));
  };
  const render = () => {
    const rows = [];
    for (const entry of [...events.values()].reverse()) {
      if (!matches(entry)) continue;
      const row = el("tr", { "data-message-id": entry.id, class: entry.id === selected ? "selected" : "", onclick: () => select(entry.id) },
        el("td", { class: "nowrap" }, clock(entry.at)),
        el("td", {}, el("b", {}, entry.name || "(event)"), el("div", { class: "muted small mono" }, entry.id)),
        el("td", {}, entry.source || "—"),
        el("td", {}, integrationsCell(entry)));
      rows.push(row);
    }
    tbody.replaceChildren(...rows);
    $("#debug-empty").hidden = events.size > 0;
  };
  const stageItem = (s) => {
    const out = [];
    if (s.stage === "received") {
      out.push(el("li", { class: "t-muted" }, el("h3", {}, "Received", el("span", { class: "muted small" }, clock(s.at))),
        el("div", { class: "small" }, `${s.event_type} from source ${s.source_id}`),
        el("details", {}, el("summary", { class: "small" }, "Event (after enrichment; email and phone hashed)"), el("pre", { class: "code small" }, pretty(s.event)))));
    } else if (s.stage === "consent") {
      const granted = s.decision === "granted";
      out.push(el("li", { class: granted ? "t-ok" : "t-muted" }, el("h3", {}, `Consent · ${s.integration_id}`, badge(s.decision)),
        el("div", { class: "small" }, granted ? ["Mapped to ", el("code", {}, s.mapping)] : s.reason)));
    } else if (s.stage === "duplicate") {
      out.push(el("li", { class: "t-muted" }, el("h3", {}, "Duplicate", badge("duplicate")), el("div", { class: "small" }, "This messageId was accepted before: not delivered again.")));
    } else if (s.stage === "skipped") {
      out.push(el("li", { class: "t-bad" }, el("h3", {}, `Skipped · ${s.integration_id}`, badge("skipped")), el("div", { class: "small" }, s.reason)));
    } else if (s.stage === "response") {
      const r = s.request || {};
      let body = r.body;
      try { body = body ? pretty(JSON.parse(body)) : ""; } catch (e) { /* not JSON */ }
      out.push(el("li", { class: "" }, el("h3", {}, `Request · ${s.integration_id}`),
        el("pre", { class: "code small request" }, `${r.method} ${r.url}\n` + Object.entries(r.headers || {}).map(([k, v]) => `${k}: ${v}`).join("\n") + (body ? "\n\n" + body : ""))));
      const ok = s.outcome === "done";
      out.push(el("li", { class: ok ? "t-ok" : "t-bad", "data-stage": "response" },
        el("h3", {}, `Vendor answer · ${s.integration_id}`, el("span", { class: "badge " + (ok ? "ok" : "bad"), "data-status": s.status }, s.status ? `HTTP ${s.status}` : "no answer"), badge(s.outcome),
          el("span", { class: "muted small" }, `${Math.round(s.latency_ms || 0)} ms`)),
        s.reason ? el("div", { class: "hint-box", "data-hint": "" }, s.reason) : null,
        s.response ? el("pre", { class: "code small" }, s.response) : null));
    }
    return out;
  };
  const select = async (id) => {
    selected = id;
    render();
    const entry = events.get(id);
    const box = $("#journey");
    box.replaceChildren(el("h2", {}, entry.name || "Event"), el("div", { class: "muted small mono" }, id),
      el("ol", { class: "timeline" }, entry.stages.flatMap(stageItem)));
    try {
      const stored = await api("GET", "/api/events/" + encodeURIComponent(id));
      if (stored.dead_letters.length) {
        box.append(el("div", { class: "banner bad small" }, `${stored.dead_letters.length} dead letter(s) for this event. `,
          el("a", { href: "/dead-letters" }, "Replay after fixing the cause →")));
      }
      if (stored.log.length) {
        box.append(el("details", {}, el("summary", { class: "small" }, `Stored delivery log (${stored.log.length})`),
          el("ul", { class: "small" }, stored.log.map((row) => el("li", {}, `${clock(row.at)} ${row.integration_id} `, badge(row.outcome), ` ${row.status || ""} ${row.reason || ""}`)))));
      }
    } catch (e) { /* the live view is enough */ }
  };
  let source = null;
  const connect = () => {
    source = new EventSource("/api/debugger/stream");
    source.addEventListener("hello", () => setState("live", "live"));
    source.onmessage = (msg) => {
      if (paused) return;
      const s = JSON.parse(msg.data);
      let entry = events.get(s.message_id);
      if (!entry) {
        entry = { id: s.message_id, stages: [], name: s.event_name, source: s.source_id, at: s.at };
        events.set(s.message_id, entry);
        while (events.size > 500) events.delete(events.keys().next().value);
      }
      entry.stages.push(s);
      if (s.event_name) entry.name = s.event_name;
      if (s.source_id) entry.source = s.source_id;
      render();
      if (selected === s.message_id) select(selected);
    };
    source.onerror = () => setState("error", "reconnecting…");
  };
  connect();
  filters.addEventListener("input", render);
  filters.addEventListener("change", render);
  filters.addEventListener("submit", (ev) => ev.preventDefault());
  $("#pause").addEventListener("click", (ev) => {
    paused = !paused;
    ev.target.textContent = paused ? "Resume" : "Pause";
    setState(paused ? "paused" : "live", paused ? "paused" : "live");
  });
  $("#clear").addEventListener("click", () => { events.clear(); selected = null; render(); $("#journey").replaceChildren(el("p", { class: "muted" }, "Select an event to see its journey.")); });
  render();
};

// ------------------------------------------------------------------------------------ start
document.addEventListener("DOMContentLoaded", () => {
  const pending = sessionStorage.getItem("datafly-toast");
  if (pending) { sessionStorage.removeItem("datafly-toast"); toast(pending); }
  for (const form of $$("form[data-logout]")) form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await api("POST", "/api/logout"); } finally { location.href = "/login"; }
  });
  for (const select of $$("select[data-autosubmit]")) select.addEventListener("change", () => select.form.submit());
  const init = pages[document.body.dataset.page];
  if (init) init();
});
