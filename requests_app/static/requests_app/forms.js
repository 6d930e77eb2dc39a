// Every page's forms, public and staff: a form is sent once. Without it an impatient double
// click filed a subject's request twice (two requests, two emails), or sent staff's note twice.
// Served as a file: the Content-Security-Policy forbids inline scripts. Plain DOM, no build step.

// Once a POST form is on its way, its buttons are disabled. After the click, so that the button's own value is sent.
document.addEventListener("submit", function (event) {
  var form = event.target;
  // getAttribute: a field named "method" (the identity form has one) hides form.method.
  if ((form.getAttribute("method") || "").toLowerCase() !== "post" || event.defaultPrevented) return;
  if (form.dataset.sent) { event.preventDefault(); return; }
  form.dataset.sent = "yes";
  var buttons = form.querySelectorAll("button");
  setTimeout(function () { buttons.forEach(function (button) { button.disabled = true; }); }, 0);
});

// A page shown again (the back button, a browser that restores form state) is usable again.
window.addEventListener("pageshow", function () {
  document.querySelectorAll("form").forEach(function (form) { delete form.dataset.sent; });
  document.querySelectorAll("form button").forEach(function (button) { button.disabled = false; });
});

// The language buttons reload the page: what was typed in a form marked data-keep-on-language-switch (the public
// request form, the status page's reply) goes along in this tab's sessionStorage, is filled back in, and is removed
// at once. Not files, hidden fields or the CSRF token. Without storage, the page loads empty, as before.
var CARRIED_FORM = "form-carried-over-a-language-switch";

// A field that follows the page's language (the request form's reply language) goes along only if the visitor chose
// its value: changed it on this page, or sent one other than the page's language (a refused form shows what was
// sent). Left as the page set it, it takes the new page's language: English carried over to the Dutch page was a
// choice nobody made, and every email would have come in English. A value filled back in after a switch was chosen.
document.addEventListener("change", function (event) {
  if (event.target.hasAttribute && event.target.hasAttribute("data-follows-page-language")) event.target.dataset.chosen = "yes";
});
function leftAsThePageSetIt(field) {
  return field.hasAttribute("data-follows-page-language") && !field.dataset.chosen && field.value === document.documentElement.lang;
}

// Which form it was: the address it posts to. Not the page's: a refused reply is shown at the reply's address,
// and switching language there comes back to the status page.
function carriedFormAddress(form) {
  return form.getAttribute("action") || location.pathname;
}
document.addEventListener("submit", function (event) {
  var form = document.querySelector("form[data-keep-on-language-switch]");
  if (!form || !event.target.classList.contains("languages")) return;
  var fields = [];
  form.querySelectorAll("input, select, textarea").forEach(function (field) {
    if (!field.name || ["file", "hidden", "submit", "button"].indexOf(field.type) !== -1 || leftAsThePageSetIt(field)) return;
    fields.push([field.name, field.value, field.type === "checkbox" || field.type === "radio" ? field.checked : null]);
  });
  try { sessionStorage.setItem(CARRIED_FORM, JSON.stringify({path: carriedFormAddress(form), fields: fields})); } catch (error) { /* no storage */ }
});

document.addEventListener("DOMContentLoaded", function () {
  var saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem(CARRIED_FORM) || "null");
    sessionStorage.removeItem(CARRIED_FORM);
  } catch (error) { return; }
  var form = document.querySelector("form[data-keep-on-language-switch]");
  if (!saved || !form || saved.path !== carriedFormAddress(form)) return;
  saved.fields.forEach(function (entry) {
    form.querySelectorAll('[name="' + CSS.escape(entry[0]) + '"]').forEach(function (field) {
      if (entry[2] !== null) {
        if (field.value === entry[1]) { field.checked = entry[2]; }
      } else if (["file", "hidden"].indexOf(field.type) === -1) {
        field.value = entry[1];
      }
      field.dispatchEvent(new Event("change", {bubbles: true}));
    });
  });
});


// The request form's details of someone acting for the subject: hidden while "I am the person the data is about" is
// chosen. Without JavaScript they are always shown, and the server ignores them unless "I am acting for them" is chosen.
// The subject's email address is required of the subject only: its field says so as the choice changes.
function showAgentDetails() {
  var details = document.querySelector("[data-shown-when-acting]");
  var acting = document.querySelector('input[name="filed_by"][value="agent"]');
  var subjectEmail = document.querySelector('input[name="subject_email"]');
  if (details && acting) details.hidden = !acting.checked;
  if (subjectEmail && acting) subjectEmail.required = !acting.checked;
}
document.addEventListener("change", function (event) {
  if (event.target.name === "filed_by") showAgentDetails();
});
showAgentDetails();
window.addEventListener("pageshow", showAgentDetails);

// The request form speaks to whoever fills it in: to the person the data is about ("Erase my data"), or to someone
// acting for them ("Erase their data"), as chosen at its top. The server renders it in one voice (the form's
// data-voice) and gives each text that differs in both: on the element that shows it (data-subject-voice,
// data-agent-voice), or, for the labels and help Django renders, on the field's or the box's wrapper
// (data-subject-voice-label, data-subject-voice-help and the agent's). Choosing switches them in place: what was typed
// stays, and the server checks the same either way. The link that switches without JavaScript reloads the page: hidden.
function lastText(element) {
  // A box's label holds the box, then its text.
  var texts = Array.prototype.filter.call(element ? element.childNodes : [], function (node) {
    return node.nodeType === Node.TEXT_NODE && node.data.trim();
  });
  return texts[texts.length - 1];
}
function replaceText(element, from, to) {
  var node = lastText(element);
  if (node && from !== null && to !== null) node.data = node.data.replace(from, to);  // keeps the label's ":" and spaces
}
function speakTo(form, voice) {
  var was = form.dataset.voice;
  if (was === voice) return;
  document.querySelectorAll("[data-agent-voice]").forEach(function (element) {
    replaceText(element, element.getAttribute("data-" + was + "-voice"), element.getAttribute("data-" + voice + "-voice"));
  });
  [["label", ":scope > label, :scope > fieldset > legend"], ["help", ":scope > p.help"]].forEach(function (part) {
    form.querySelectorAll("[data-agent-voice-" + part[0] + "]").forEach(function (wrapper) {
      replaceText(
        wrapper.querySelector(part[1]),
        wrapper.getAttribute("data-" + was + "-voice-" + part[0]),
        wrapper.getAttribute("data-" + voice + "-voice-" + part[0])
      );
    });
  });
  form.dataset.voice = voice;
}
function speakAsChosen() {
  var form = document.querySelector("form[data-voice]");
  var acting = document.querySelector('input[name="filed_by"][value="agent"]');
  if (!form || !acting) return;
  speakTo(form, acting.checked ? "agent" : "subject");
  document.querySelectorAll("[data-voice-switch-without-script]").forEach(function (link) { link.hidden = true; });
}
document.addEventListener("change", function (event) {
  if (event.target.name === "filed_by") speakAsChosen();
});
speakAsChosen();
window.addEventListener("pageshow", speakAsChosen);
