// The dashboard's live progress, served as a file so that the Content-Security-Policy
// can forbid inline scripts (script-src 'self'). Plain DOM, no build step.

// Live progress: poll every row that names its progress URL in `attribute` every two
// seconds, show the answer with `show(row, data)`, and stop once `done(data)` says so.
function pollProgress(attribute, show, done) {
  document.querySelectorAll("tr[" + attribute + "]").forEach(function (row) {
    var url = row.getAttribute(attribute);
    if (!url) return;
    var timer = setInterval(function () {
      fetch(url, {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (data) {
        show(row, data);
        if (done(data)) { clearInterval(timer); }
      });
    }, 2000);
  });
}

// The state cells are live regions (aria-live): written only when the state changes, so that a screen reader
// says "Ready for review" once, not every two seconds.
function setText(cell, text) {
  if (cell.textContent !== text) { cell.textContent = text; }
}

document.addEventListener("DOMContentLoaded", function () {
  // An export being compiled: its status and counts.
  pollProgress("data-export-progress", function (row, data) {
    setText(row.querySelector(".export-status"), data.label);
    row.querySelector(".export-rows").textContent = data.progress_in_words;  // in the page's language, "1 row" or "2 rows"
  }, function (data) { return data.status !== "running" && data.status !== "queued"; });

  // An action on a source system under way: reload once it finishes, so that its counts
  // and buttons are the server's.
  pollProgress("data-action-progress", function (row, data) {
    setText(row.querySelector(".action-status"), data.label);
    var p = data.progress || {};
    var counts = row.querySelector(".action-progress");
    counts.textContent = p.categories_total ? p.categories_done + "/" + p.categories_total + " " + counts.dataset.categories : "";
    if (!data.working) { window.location.reload(); }
  }, function (data) { return !data.working; });
});

// A refused form: the keyboard and a screen reader start at its first mistake, as on the public pages
// (whose error summary has autofocus), even where a form puts autofocus on its first field (Django's
// password change does). Django marks a field in error aria-invalid; a mistake of the whole form is a
// list of its own, or a settings page's alert; an action the server refused ("changed since you loaded it")
// is an error message at the top. Whichever shows first takes the focus.
document.addEventListener("DOMContentLoaded", function () {
  var found = document.querySelectorAll('main [aria-invalid="true"], main .errorlist.nonfield, main p.error[role="alert"], main .messages .error');
  var mistake = Array.prototype.find.call(found, function (element) { return element.offsetParent !== null; });
  if (!mistake) return;
  if (!mistake.matches("input, select, textarea")) mistake.tabIndex = -1;
  mistake.focus();
});

// An idle session ends after SESSION_IDLE_TIMEOUT_SECONDS, and a form sent after that is lost at the sign-in:
// two minutes before (a quarter of a shorter session), the page says so and offers to keep the session (WCAG 2.2.1).
// Every request to the server renews it (SESSION_SAVE_EVERY_REQUEST), the button's too, but not the progress polls,
// which nobody at the keyboard asked for. However active, a session ends SESSION_ABSOLUTE_TIMEOUT_HOURS after
// signing in: when that comes first (data-session-final, or the button's answer says so), the page says that
// instead, with no offer to keep it.
document.addEventListener("DOMContentLoaded", function () {
  var body = document.body;
  var seconds = parseInt(body.dataset.sessionSeconds || "", 10);
  var final = "sessionFinal" in body.dataset;
  var warning = document.querySelector(".session-warning");
  if (isNaN(seconds) || !warning) return;
  var keep = warning.querySelector(".keep-session");
  var idle = warning.querySelector(".session-idle");
  var finalNotice = warning.querySelector(".session-final");
  var ended = warning.querySelector(".session-ended");
  var warnTimer, endTimer;
  // The warning stays at the top of the window while the page scrolls, over what is under it: while it shows, the
  // page keeps its height clear, so that a control the keyboard moves to is scrolled below it, not hidden (WCAG 2.4.11).
  // Its height changes with its text and the width of the window; 8 px more clear the focus outline (3 px, 2 px off).
  function clearBelowWarning() {
    document.documentElement.style.scrollPaddingTop = warning.hidden ? "" : warning.getBoundingClientRect().height + 8 + "px";
  }
  function schedule() {
    clearTimeout(warnTimer);
    clearTimeout(endTimer);
    warning.hidden = true;
    idle.hidden = final;
    keep.hidden = final;
    finalNotice.hidden = !final;
    ended.hidden = true;
    clearBelowWarning();
    var warnBefore = Math.min(120, seconds / 4);
    warnTimer = setTimeout(function () {
      warning.hidden = false;
      clearBelowWarning();
    }, Math.max(0, seconds - warnBefore) * 1000);
    // Ended, it says only that: "about to end" beside it contradicted it.
    endTimer = setTimeout(function () {
      keep.hidden = true;
      idle.hidden = true;
      finalNotice.hidden = true;
      ended.hidden = false;
      clearBelowWarning();
    }, seconds * 1000);
  }
  window.addEventListener("resize", clearBelowWarning);
  keep.addEventListener("click", function () {
    fetch(body.dataset.keepAlive, {credentials: "same-origin"}).then(function (response) {
      if (!response.ok || response.redirected) return null;
      return response.json();
    }).then(function (data) {
      if (!data) return;
      seconds = data.seconds;
      final = data.final;
      schedule();
    });
  });
  schedule();
});
