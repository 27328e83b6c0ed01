/*
 * Credia web chat: a page on Rasa's socketio channel (events user_uttered / bot_uttered, session persistence).
 *
 * The session id lives in localStorage, so a reload (or a new tab) rejoins the same conversation, and a local
 * transcript is kept beside it so the history shows again: the server keeps the conversation, not the page.
 * A signed link (?t=...) from another channel swaps the session id for that conversation's id.
 * The server signs each session id (event session_token); the token is kept beside the id and sent with every
 * session_request, so nobody who merely knows an id can join the conversation. A refused token starts anew.
 */
(function () {
  "use strict";

  var SESSION_KEY = "credia.webchat.session";
  var TOKEN_KEY = "credia.webchat.session_token";
  var TRANSCRIPT_KEY = "credia.webchat.transcript";
  var MAX_TRANSCRIPT = 200; // what localStorage keeps; the tracker on the server has everything
  var TYPING_TIMEOUT_MS = 30000; // stop showing "escribiendo" if the bot stays silent
  var URL_PATTERN = /https?:\/\/[^\s<>"]+[^\s<>".,;:!?)»]/g;

  var TEXT = {
    you: "Usted: ",
    bot: "Credia: ",
    connecting: "Conectando…",
    online: "En línea",
    offline: "Sin conexión. Reintentando…",
    options: "Opciones de respuesta",
    image: "Imagen enviada por Credia",
    linkOpened: "Continuamos aquí la conversación que inició en otro canal.",
    linkFailed: "No pudimos abrir la conversación del enlace. Puede escribirnos aquí de todos modos.",
    sessionRefused: "No pudimos continuar la conversación anterior. Empezamos una nueva.",
    confirmReset: "¿Borrar esta conversación de este dispositivo y empezar una nueva?"
  };

  var root = document.getElementById("credia-chat");
  var list = document.getElementById("cw-messages");
  var form = document.getElementById("cw-form");
  var input = document.getElementById("cw-input");
  var typing = document.getElementById("cw-typing");
  var status = document.getElementById("cw-status");
  var params = new URLSearchParams(window.location.search);
  var embedded = params.get("embed") === "1" && window.parent !== window;
  var socketPath = root.getAttribute("data-socketio-path") || "/socket.io";

  // localStorage may be refused (private browsing, blocked third-party storage): then remember in memory.
  var memory = {};
  var store = {
    get: function (key) {
      try { return window.localStorage.getItem(key); } catch (e) { return key in memory ? memory[key] : null; }
    },
    set: function (key, value) {
      try { window.localStorage.setItem(key, value); } catch (e) { memory[key] = value; }
    },
    remove: function (key) {
      try { window.localStorage.removeItem(key); } catch (e) { delete memory[key]; }
    }
  };

  var sessionId = store.get(SESSION_KEY);
  var sessionToken = store.get(TOKEN_KEY);
  var transcript = loadTranscript();
  var confirmed = false;
  var outbox = [];
  var typingTimer = null;
  var socket = null;

  function loadTranscript() {
    try {
      var entries = JSON.parse(store.get(TRANSCRIPT_KEY) || "[]");
      return Array.isArray(entries) ? entries : [];
    } catch (e) {
      return [];
    }
  }

  function saveTranscript() {
    transcript = transcript.slice(-MAX_TRANSCRIPT);
    store.set(TRANSCRIPT_KEY, JSON.stringify(transcript));
  }

  function record(entry) {
    transcript.push(entry);
    saveTranscript();
    render(entry);
  }

  /* Rendering: text only through text nodes (never innerHTML), links made clickable. */

  function appendText(parent, text) {
    text.split("\n").forEach(function (line, index) {
      if (index > 0) parent.appendChild(document.createElement("br"));
      var last = 0;
      line.replace(URL_PATTERN, function (url, offset) {
        parent.appendChild(document.createTextNode(line.slice(last, offset)));
        var link = document.createElement("a");
        link.href = url;
        link.textContent = url;
        link.target = "_blank";
        link.rel = "noopener noreferrer";
        parent.appendChild(link);
        last = offset + url.length;
        return url;
      });
      parent.appendChild(document.createTextNode(line.slice(last)));
    });
  }

  function render(entry) {
    var item = document.createElement("li");
    item.className = "cw-message cw-message--" + entry.role;
    var bubble = document.createElement("div");
    bubble.className = "cw-bubble";
    if (entry.role !== "notice") {
      var speaker = document.createElement("span");
      speaker.className = "cw-visually-hidden";
      speaker.textContent = entry.role === "user" ? TEXT.you : TEXT.bot;
      bubble.appendChild(speaker);
    }
    if (entry.text) appendText(bubble, entry.text);
    if (entry.image) {
      var image = document.createElement("img");
      image.src = entry.image;
      image.alt = TEXT.image;
      image.className = "cw-image";
      bubble.appendChild(image);
    }
    item.appendChild(bubble);
    if (entry.buttons && entry.buttons.length) item.appendChild(renderButtons(entry));
    list.appendChild(item);
    list.scrollTop = list.scrollHeight;
  }

  function renderButtons(entry) {
    var group = document.createElement("div");
    group.className = "cw-buttons";
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", TEXT.options);
    entry.buttons.forEach(function (choice) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "cw-choice";
      button.textContent = choice.title;
      button.disabled = Boolean(entry.chosen);
      if (entry.chosen === choice.title) button.classList.add("cw-choice--chosen");
      button.addEventListener("click", function () {
        entry.chosen = choice.title;
        saveTranscript();
        Array.prototype.forEach.call(group.querySelectorAll("button"), function (b) { b.disabled = true; });
        button.classList.add("cw-choice--chosen");
        send(choice.payload, choice.title);
        input.focus();
      });
      group.appendChild(button);
    });
    return group;
  }

  function notice(text) {
    record({ role: "notice", text: text });
  }

  function setStatus(text, online) {
    status.textContent = text;
    root.classList.toggle("cw-online", Boolean(online));
  }

  function showTyping() {
    typing.hidden = false;
    list.scrollTop = list.scrollHeight;
    window.clearTimeout(typingTimer);
    typingTimer = window.setTimeout(hideTyping, TYPING_TIMEOUT_MS);
  }

  function hideTyping() {
    typing.hidden = true;
    window.clearTimeout(typingTimer);
  }

  /* The conversation over socket.io. */

  function emitMessage(message) {
    socket.emit("user_uttered", { message: message, session_id: sessionId });
  }

  // ``shown`` is what the customer sees (a button's title) when the bot receives something else (its payload).
  function send(message, shown) {
    record({ role: "user", text: shown || message });
    if (confirmed) emitMessage(message); else outbox.push(message);
    showTyping();
  }

  // What Rasa's SocketIOOutput emits: {text}, {text, quick_replies: [{title, payload}]}, {attachment}.
  function receive(message) {
    if (!message || typeof message !== "object") return;
    var entry = { role: "bot", text: typeof message.text === "string" ? message.text : "" };
    var buttons = message.quick_replies || message.buttons;
    if (Array.isArray(buttons)) {
      entry.buttons = buttons.filter(function (b) { return b && b.title; }).map(function (b) {
        return { title: String(b.title), payload: String(b.payload || b.title) };
      });
    }
    var attachment = message.attachment;
    if (attachment && attachment.type === "image" && attachment.payload && /^https?:/.test(attachment.payload.src)) {
      entry.image = attachment.payload.src;
    }
    if (!entry.text && !entry.image && !(entry.buttons && entry.buttons.length)) return;
    hideTyping();
    record(entry);
    tellHost("message");
  }

  function connect() {
    socket = window.io({ path: socketPath });
    socket.on("connect", function () {
      confirmed = false;
      socket.emit("session_request", { session_id: sessionId, session_token: sessionToken });
    });
    socket.on("session_token", function (data) {
      if (!data || typeof data.session_token !== "string") return;
      sessionToken = data.session_token;
      store.set(TOKEN_KEY, sessionToken);
    });
    // The stored session cannot be rejoined (expired, or signed by a server secret that changed): start anew.
    socket.on("session_rejected", function (data) {
      forgetSession();
      notice((data && data.detail) || TEXT.sessionRefused);
      socket.emit("session_request", {});
    });
    socket.on("session_confirm", function (data) {
      var id = typeof data === "string" ? data : data && data.session_id;
      if (!id) return;
      sessionId = id;
      store.set(SESSION_KEY, id);
      root.setAttribute("data-session-id", id);
      confirmed = true;
      setStatus(TEXT.online, true);
      outbox.splice(0).forEach(emitMessage);
    });
    socket.on("bot_uttered", receive);
    socket.on("disconnect", function () {
      confirmed = false;
      setStatus(TEXT.offline, false);
    });
    socket.on("connect_error", function () { setStatus(TEXT.offline, false); });
  }

  // A signed link from another channel names the conversation to continue; the token leaves the address bar.
  function adoptSignedLink(token) {
    params.delete("t");
    var query = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (query ? "?" + query : "") + window.location.hash);
    return window.fetch("session?t=" + encodeURIComponent(token), { headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (body) {
          if (!response.ok || !body.conversation_id) {
            notice(body.detail || TEXT.linkFailed);
            return;
          }
          sessionToken = body.session_token || null;
          if (sessionToken) store.set(TOKEN_KEY, sessionToken); else store.remove(TOKEN_KEY);
          if (body.conversation_id !== sessionId) {
            sessionId = body.conversation_id;
            store.set(SESSION_KEY, sessionId);
            transcript = [];
            list.textContent = "";
            saveTranscript();
          }
          notice(TEXT.linkOpened);
        });
      })
      .catch(function () { notice(TEXT.linkFailed); });
  }

  function forgetSession() {
    store.remove(SESSION_KEY);
    store.remove(TOKEN_KEY);
    store.remove(TRANSCRIPT_KEY);
    sessionId = null;
    sessionToken = null;
    transcript = [];
    list.textContent = "";
  }

  function reset() {
    if (!window.confirm(TEXT.confirmReset)) return;
    forgetSession();
    outbox = [];
    hideTyping();
    // A new socket: the old one is still in the old conversation's room and would get its messages.
    socket.disconnect();
    connect();
    input.focus();
  }

  /* Inside the launcher's panel (static/embed.js): close on request, and say when a message arrives. */

  function tellHost(type) {
    if (embedded) window.parent.postMessage({ source: "credia-webchat", type: type }, "*");
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    input.value = "";
    send(text);
  });

  document.getElementById("cw-reset").addEventListener("click", reset);

  if (embedded) {
    document.documentElement.classList.add("cw-embedded");
    var close = document.getElementById("cw-close");
    close.hidden = false;
    close.addEventListener("click", function () { tellHost("close"); });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape") tellHost("close");
    });
    window.addEventListener("message", function (event) {
      if (event.source === window.parent && event.data && event.data.source === "credia-webchat-host"
          && event.data.type === "open") {
        input.focus();
      }
    });
  }

  setStatus(TEXT.connecting, false);
  transcript.forEach(render);
  var token = params.get("t");
  (token ? adoptSignedLink(token) : Promise.resolve()).then(connect);
  if (!embedded && window.matchMedia("(pointer: fine)").matches) input.focus();
})();
