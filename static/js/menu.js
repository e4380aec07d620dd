// The menu button of narrow screens: it shows or hides the navigation. No dependencies.
"use strict";

document.addEventListener("click", (event) => {
  const button = event.target.closest(".menu-toggle");
  if (!button) return;
  const bar = button.closest(".topbar");
  const open = bar.classList.toggle("open");
  button.setAttribute("aria-expanded", open ? "true" : "false");
});
