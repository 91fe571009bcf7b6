// Keyboard shortcuts and time on task for the rating page. The page works without
// this script (plain form post); it only saves mouse trips and measures time.
(function () {
  "use strict";
  var form = document.getElementById("rating-form");
  if (!form) { return; }
  var fieldsets = Array.prototype.slice.call(form.querySelectorAll("fieldset.criterion"));
  var current = 0;
  var visibleMs = 0;
  var shownAt = performance.now();

  // time on task counts only while the page is visible
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { visibleMs += performance.now() - shownAt; } else { shownAt = performance.now(); }
  });

  function answered(fieldset) { return fieldset.querySelector("input:checked") !== null; }

  function focusFieldset(index) {
    fieldsets.forEach(function (f, k) { f.classList.toggle("current", k === index); });
    current = index;
  }

  function nextUnanswered(from) {
    for (var k = 0; k < fieldsets.length; k++) {
      var index = (from + k) % fieldsets.length;
      if (!answered(fieldsets[index])) { return index; }
    }
    return -1;
  }

  fieldsets.forEach(function (f, k) {
    f.addEventListener("click", function () { focusFieldset(k); });
  });

  form.addEventListener("submit", function () {
    var total = visibleMs + (document.hidden ? 0 : performance.now() - shownAt);
    document.getElementById("elapsed_ms").value = String(Math.round(total));
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    var key = event.key.toLowerCase();
    if (key === "enter") {
      event.preventDefault();
      var missing = nextUnanswered(0);
      if (missing < 0) { form.requestSubmit(); } else { focusFieldset(missing); }
      return;
    }
    if (key === "arrowleft" || key === "arrowright") {
      var link = document.getElementById(key === "arrowleft" ? "prev" : "next");
      if (link) { window.location.href = link.href; }
      return;
    }
    var input = fieldsets.length && fieldsets[current].querySelector('input[data-key="' + key + '"]');
    if (!input || input.disabled) { return; }
    event.preventDefault();
    input.checked = true;
    var next = nextUnanswered(current);
    focusFieldset(next < 0 ? current : next);
  });

  focusFieldset(Math.max(0, nextUnanswered(0)));
})();
