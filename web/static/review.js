// aidhub's review page (web/templates/review.html): a key press picks a label. Keys 1..9 press the
// button of that number, s skips; the button's own form is submitted, as a click would (with its CSRF
// token), so the page works the same without this script. Keys typed into a field are left alone.
"use strict";

{  // a block of its own: nothing here is a global beside hub.js's
  let sent = false;  // one answer per page: a second key press before the next item loads is ignored

  document.addEventListener("keydown", (event) => {
    if (sent || event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const target = event.target;
    if (target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
    const button = document.querySelector('.review-labels button[data-key="' + CSS.escape(event.key.toLowerCase()) + '"]');
    if (!button || button.disabled) return;
    event.preventDefault();
    sent = true;
    document.querySelectorAll(".review-labels button").forEach((b) => { b.disabled = b !== button; });
    button.focus();
    button.form.requestSubmit(button);
  });

  document.addEventListener("DOMContentLoaded", () => {
    const first = document.querySelector(".review-labels button");
    const message = document.getElementById("review-error");
    if (message) message.focus();
    else if (first) first.focus({ preventScroll: true });
  });
}
