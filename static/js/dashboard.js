/*
 * Staff pages: the compose form's people picker, its draft (kept in localStorage so a
 * reload or an expired session loses nothing), the "are you sure?" step, emergency
 * templates and the drill box, its preview
 * (drawn by schoolbell.js's renderAlert), and filtering the online list. Plain
 * JavaScript, no inline handlers (the CSP forbids them).
 */
(function () {
  "use strict";

  var form = document.getElementById("compose-form");
  // The page's language, from schoolbell.js (loaded first on every signed-in page).
  function _(text, values) {
    if (window.Schoolbell && window.Schoolbell.t) return window.Schoolbell.t(text, values);
    return text.replace(/\{(\w+)\}/g, function (all, name) { return values && name in values ? values[name] : all; });
  }

  function changed() {
    if (!form) return;
    saveDraft();
    form.dispatchEvent(new CustomEvent("recipients-changed", { bubbles: true }));
  }

  // People picker ----------------------------------------------------------------
  function addPerson(email, name) {
    var list = document.getElementById("chosen-people");
    if (!list || list.querySelector('[data-person="' + CSS.escape(email) + '"]')) return;
    var item = document.createElement("li");
    item.dataset.person = email;
    var input = document.createElement("input");
    input.type = "hidden";
    input.name = "user";
    input.value = email;
    var remove = document.createElement("button");
    remove.type = "button";
    remove.className = "link remove";
    remove.dataset.removePerson = "";
    remove.setAttribute("aria-label", _("Remove {name}", { name: name }));
    remove.textContent = "\u00d7";
    item.append(input, document.createTextNode(name + " "), remove);
    list.appendChild(item);
  }

  document.addEventListener("click", function (event) {
    var add = event.target.closest("[data-add-person]");
    if (add) {
      addPerson(add.dataset.email, add.dataset.name);
      remember(add.dataset.email, add.dataset.name);
      changed();
      return;
    }
    var remove = event.target.closest("[data-remove-person]");
    if (remove) {
      remove.closest("li").remove();
      changed();
      return;
    }
    if (event.target.closest("[data-cancel-confirm]")) cancelConfirm();
  });

  // "Are you sure?" -----------------------------------------------------------------
  function cancelConfirm() {
    var panel = document.getElementById("confirm-send");
    if (panel) panel.remove();
    var send = document.getElementById("send");
    if (send) send.hidden = false;
  }

  // Drafts -------------------------------------------------------------------------
  var names = {};  // email -> name of people picked, to show their chips again
  function remember(email, name) { names[email] = name; }

  function draftKey() { return form && form.dataset.draftKey; }

  function saveDraft() {
    if (!draftKey()) return;
    var fields = [];
    new FormData(form).forEach(function (value, name) {
      if (name !== "csrf_token" && name !== "key" && name !== "q") fields.push([name, value]);
    });
    try {
      localStorage.setItem(draftKey(), JSON.stringify({ fields: fields, names: names }));
    } catch (e) { /* storage full or disabled: the draft just is not kept */ }
  }

  function restoreDraft() {
    var saved;
    try { saved = JSON.parse(localStorage.getItem(draftKey()) || "null"); } catch (e) { saved = null; }
    if (!saved) return;
    names = saved.names || {};
    saved.fields.forEach(function (pair) {
      var name = pair[0], value = pair[1];
      if (name === "user") { addPerson(value, names[value] || value); return; }
      var inputs = form.querySelectorAll('[name="' + CSS.escape(name) + '"]');
      inputs.forEach(function (input) {
        if (input.type === "checkbox") { if (input.value === value) input.checked = true; }
        else input.value = value;
      });
    });
  }

  if (form) {
    form.querySelectorAll("#chosen-people [data-person]").forEach(function (item) {
      names[item.dataset.person] = item.textContent.replace("\u00d7", "").trim();
    });
    // A fresh page gets the unsent draft back; a page the server sent back (an error,
    // or "are you sure?") already shows the draft, which becomes the saved one.
    if (form.hasAttribute("data-restore-draft")) restoreDraft();
    else saveDraft();
    form.addEventListener("input", function () { cancelConfirm(); saveDraft(); });
    form.addEventListener("change", saveDraft);
    // Sent: the draft is done with. If the send fails, the page that comes back holds it.
    form.addEventListener("submit", function () {
      try { localStorage.removeItem(draftKey()); } catch (e) { /* ignore */ }
    });
  }

  // Emergencies --------------------------------------------------------------------
  // A template button fills title, message and priority (the form's input event then
  // updates the preview and saves the draft); "This is a drill" is offered for
  // emergencies only.
  function showDrillField() {
    var field = document.getElementById("drill-field");
    var priority = document.getElementById("priority");
    if (field && priority) field.hidden = priority.value !== "emergency";
  }

  function useTemplate(button) {
    var title = document.getElementById("title"), body = document.getElementById("body");
    var priority = document.getElementById("priority");
    if (!title || !body || !priority) return;
    title.value = button.dataset.title;
    body.value = button.dataset.body;
    priority.value = "emergency";
    showDrillField();
    title.dispatchEvent(new Event("input", { bubbles: true }));
    title.focus();
  }

  if (form) {
    form.addEventListener("click", function (event) {
      var button = event.target.closest("[data-emergency-template]");
      if (button) useTemplate(button);
    });
    form.addEventListener("change", function (event) {
      if (event.target.id === "priority") showDrillField();
    });
    showDrillField();  // a restored draft may be an emergency
  }

  // Preview ------------------------------------------------------------------------
  // The server sends the alert's data (#alert-preview[data-alert]); schoolbell.js builds
  // it with the function that builds every recipient's toast, so the two cannot differ.
  function renderPreview() {
    var box = document.getElementById("alert-preview");
    if (!box || !box.dataset.alert || !window.Schoolbell) return;
    if (box.querySelector(".schoolbell-toast")) return;  // this swap's alert is up already
    var alert = window.Schoolbell.renderAlert(JSON.parse(box.dataset.alert), { preview: true });
    alert.setAttribute("aria-label", _("Preview of the alert"));
    box.prepend(alert);
  }
  renderPreview();
  document.body.addEventListener("htmx:afterSwap", renderPreview);

  // Online list filter ---------------------------------------------------------------
  function filterOnline() {
    var box = document.getElementById("online-search");
    if (!box) return;
    var term = box.value.trim().toLowerCase();
    document.querySelectorAll("#online-panel [data-search]").forEach(function (item) {
      item.hidden = term !== "" && item.dataset.search.indexOf(term) < 0;
    });
  }
  document.addEventListener("input", function (event) {
    if (event.target.id === "online-search") filterOnline();
  });
  // The panel is replaced whenever presence changes: apply the filter to the new one.
  document.body.addEventListener("htmx:oobAfterSwap", filterOnline);
  document.body.addEventListener("htmx:afterSwap", filterOnline);
  // Forms that undo something for many people (withdraw, cancel) ask first.
  document.addEventListener("submit", function (event) {
    var guarded = event.target.closest("form[data-confirm]");
    if (guarded && !window.confirm(guarded.dataset.confirm)) event.preventDefault();
  });
  // A send time makes the send a schedule: the button says which it will be.
  var sendAt = document.getElementById("send_at");
  function labelSend() {
    var button = document.getElementById("send");
    if (sendAt && button) button.textContent = sendAt.value ? _("Schedule") : _("Send");
  }
  if (sendAt) {
    sendAt.addEventListener("input", labelSend);
    sendAt.addEventListener("change", labelSend);
    labelSend();
  }
})();
