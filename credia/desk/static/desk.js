// Live console: server-sent events say what changed; the page fetches itself again and swaps the regions whose
// content changed (data-live + data-version), so a form being typed in is never replaced. Forms post in the
// background and show errors next to them; without this script every form still works as a plain post.
(function () {
  "use strict";

  var EVENT_MESSAGES = {
    handoff_created: "Nueva conversación en espera.",
    customer_message: "Nuevo mensaje del cliente.",
    assigned: "Cambió la asignación de una conversación.",
    resolved: "Se resolvió una conversación.",
    ticket: "Cambió la lista de llamadas y mensajes.",
    message: "",
    delivery: "",
    agents: "",
    survey: ""
  };
  var announcer = document.getElementById("announcer");
  var refreshing = false;
  var pending = false;

  function announce(text) {
    if (!text || !announcer) return;
    announcer.textContent = "";
    window.setTimeout(function () { announcer.textContent = text; }, 50);
  }

  function toLogin() {
    window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
  }

  function refresh() {
    if (refreshing) { pending = true; return; }
    refreshing = true;
    fetch(window.location.href, { headers: { Accept: "text/html" }, credentials: "same-origin" })
      .then(function (response) {
        if (response.redirected && response.url.indexOf("/login") !== -1) { toLogin(); return null; }
        return response.ok ? response.text() : null;
      })
      .then(function (text) {
        if (!text) return;
        var fresh = new DOMParser().parseFromString(text, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (region) {
          var replacement = fresh.getElementById(region.id);
          if (replacement && replacement.getAttribute("data-version") !== region.getAttribute("data-version")) {
            var node = document.importNode(replacement, true);
            region.replaceWith(node);
            enhance(node);
          }
        });
        scrollTranscript();
      })
      .catch(function () { /* the next event or the periodic refresh tries again */ })
      .then(function () {
        refreshing = false;
        if (pending) { pending = false; refresh(); }
      });
  }

  function scrollTranscript() {
    var transcript = document.getElementById("transcript");
    if (transcript) transcript.scrollTop = transcript.scrollHeight;
  }

  function submit(event) {
    var form = event.target;
    event.preventDefault();
    var error = form.querySelector(".form-error");
    var button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json", "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(new FormData(form)).toString()
    })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          return { status: response.status, ok: response.ok, data: data };
        });
      })
      .then(function (result) {
        if (result.status === 401) { toLogin(); return; }
        if (!result.ok) {
          error.textContent = result.data.detail || "No se pudo completar. Intente de nuevo.";
          error.hidden = false;
          return;
        }
        error.hidden = true;
        error.textContent = "";
        var target = result.data.redirect;
        if (target && target !== window.location.pathname) { window.location.assign(target); return; }
        form.querySelectorAll("textarea").forEach(function (area) { area.value = ""; });
        announce("Listo.");
        refresh();
      })
      .catch(function () {
        error.textContent = "Sin conexión con la mesa de agentes. Intente de nuevo.";
        error.hidden = false;
      })
      .then(function () { if (button) button.disabled = false; });
  }

  function toggleCallback(select) {
    var field = document.querySelector("[data-callback-field]");
    if (!field) return;
    var needed = select.value === "callback";
    field.hidden = !needed;
    field.querySelector("input").required = needed;
  }

  function enhance(root) {
    root.querySelectorAll("form[data-async]").forEach(function (form) {
      form.addEventListener("submit", submit);
    });
    root.querySelectorAll("textarea").forEach(function (area) {
      area.addEventListener("keydown", function (event) {
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) area.form.requestSubmit();
      });
    });
    root.querySelectorAll("[data-insert-canned]").forEach(function (button) {
      button.addEventListener("click", function () {
        var choice = document.getElementById("canned");
        var reply = document.getElementById("reply-text");
        if (!choice || !reply || !choice.value) return;
        reply.value = reply.value ? reply.value + "\n" + choice.value : choice.value;
        reply.focus();
      });
    });
    var outcome = root.querySelector("#outcome");
    if (outcome) {
      outcome.addEventListener("change", function () { toggleCallback(outcome); });
      toggleCallback(outcome);
    }
  }

  enhance(document);
  scrollTranscript();

  if (window.EventSource) {
    var source = new EventSource("/console/events");
    Object.keys(EVENT_MESSAGES).forEach(function (type) {
      source.addEventListener(type, function () {
        announce(EVENT_MESSAGES[type]);
        refresh();
      });
    });
    source.addEventListener("open", function () { document.body.setAttribute("data-live-connected", "true"); });
  }
  // Waiting times move even when nothing happens; a page that sets data-refresh-seconds (the dashboard) asks
  // for its own pace.
  var pace = document.querySelector("[data-refresh-seconds]");
  window.setInterval(refresh, pace ? Number(pace.getAttribute("data-refresh-seconds")) * 1000 : 60000);
})();
