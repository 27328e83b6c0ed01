/*
 * Credia web chat launcher for a lender's own site:
 *   <script src="https://ASSISTANT/webhooks/webchat/static/embed.js" async></script>
 * adds a button in the corner that opens the chat in a panel. The chat runs in an iframe from the assistant's
 * own address, so the site's styles cannot break it and its session stays with the assistant.
 */
(function () {
  "use strict";

  if (window.crediaWebchatLoaded) return;
  window.crediaWebchatLoaded = true;

  var script = document.currentScript;
  var chatUrl = new URL("../", script.src);
  chatUrl.searchParams.set("embed", "1");

  var stylesheet = document.createElement("link");
  stylesheet.rel = "stylesheet";
  stylesheet.href = new URL("embed.css", script.src).href;
  document.head.appendChild(stylesheet);

  var launcher = document.createElement("button");
  launcher.type = "button";
  launcher.className = "credia-webchat-launcher";
  launcher.setAttribute("aria-controls", "credia-webchat-panel");
  launcher.setAttribute("aria-expanded", "false");
  // One name whether open or closed: aria-expanded tells which.
  var label = document.createElement("span");
  label.textContent = "¿Le ayudamos? Chatee con nosotros";
  var badge = document.createElement("span");
  badge.className = "credia-webchat-badge";
  badge.textContent = "Mensaje nuevo";
  badge.hidden = true;
  launcher.appendChild(label);
  launcher.appendChild(badge);

  var panel = document.createElement("div");
  panel.id = "credia-webchat-panel";
  panel.className = "credia-webchat-panel";
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", "Chat con Credia");
  panel.hidden = true;
  var frame = null; // created on the first open: no connection until the customer wants to chat
  var frameLoaded = false;

  function open() {
    if (!frame) {
      frame = document.createElement("iframe");
      frame.title = "Chat con Credia";
      frame.src = chatUrl.href;
      frame.className = "credia-webchat-frame";
      frame.addEventListener("load", function () {
        frameLoaded = true;
        focusChat();
      });
      panel.appendChild(frame);
    }
    panel.hidden = false;
    badge.hidden = true;
    launcher.setAttribute("aria-expanded", "true");
    focusChat();
  }

  function close() {
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
  }

  function focusChat() {
    if (panel.hidden || !frameLoaded) return;
    frame.focus();
    frame.contentWindow.postMessage({ source: "credia-webchat-host", type: "open" }, chatUrl.origin);
  }

  launcher.addEventListener("click", function () {
    if (panel.hidden) open(); else close();
  });

  window.addEventListener("message", function (event) {
    if (!frame || event.source !== frame.contentWindow || event.origin !== chatUrl.origin) return;
    var data = event.data || {};
    if (data.source !== "credia-webchat") return;
    if (data.type === "close") close();
    if (data.type === "message" && panel.hidden) badge.hidden = false;
  });

  function mount() {
    document.body.appendChild(panel);
    document.body.appendChild(launcher);
  }

  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
