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

