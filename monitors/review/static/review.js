// Keyboard shortcuts of the review page: an element with data-key="1 ArrowLeft" is clicked when one of those keys
// is pressed (letters case-insensitively), unless the reviewer is typing in a field; Ctrl+Enter in a field submits
// its form. Served as a file: the page's Content-Security-Policy allows no inline script.
"use strict";
document.addEventListener("keydown", function (event) {
  if (event.defaultPrevented || event.altKey || event.metaKey || event.isComposing) {
    return;
  }
  var target = event.target;
  var field = target && target.closest ? target.closest("textarea, input[type=text], input[type=password]") : null;
  if (field) {
    if (event.key === "Enter" && event.ctrlKey && field.form) {
      event.preventDefault();
      field.form.requestSubmit();
    }
    return;
  }
  if (event.ctrlKey) {
    return;
  }
  var key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  var elements = document.querySelectorAll("[data-key]");
  for (var i = 0; i < elements.length; i++) {
    if (elements[i].getAttribute("data-key").split(" ").indexOf(key) >= 0) {
      event.preventDefault();
      elements[i].focus();
      elements[i].click();
      return;
    }
  }
});
