// Copy buttons: <button data-copy="#field">Copy</button> copies the field's text. No dependencies.
"use strict";

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const field = document.querySelector(button.dataset.copy);
  if (!field) return;
  const text = "value" in field ? field.value : field.textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Plain-HTTP pages have no clipboard API: select the text and use the old command.
    field.select?.();
    document.execCommand("copy");
  }
  const label = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = label; }, 2000);
});
