// The job page: while the job is queued or running, poll its state every second and show the
// log as it grows. No dependencies.
"use strict";

(() => {
  const facts = document.getElementById("job");
  if (!facts) return;
  const active = (status) => status === "queued" || status === "running";
  const show = (selector, text) => {
    const element = document.querySelector(`[data-testid=${selector}]`);
    if (element && element.textContent !== text) element.textContent = text;
  };
  const poll = async () => {
    let state;
    try {
      const answer = await fetch(facts.dataset.stateUrl, { headers: { Accept: "application/json" } });
      if (!answer.ok) return;
      state = await answer.json();
    } catch {
      setTimeout(poll, 2000);
      return;
    }
    show("job-status", state.status);
    show("job-log", state.log);
    show("job-runtime", String(state.runtime));
    if (state.usage && state.usage.credits !== null) show("job-credits", state.usage.credits);
    const cancel = document.querySelector("[data-testid=job-cancel-form]");
    if (cancel) cancel.hidden = !active(state.status);
    if (active(state.status)) setTimeout(poll, 1000);
  };
  if (active(document.querySelector("[data-testid=job-status]").textContent.trim())) {
    setTimeout(poll, 1000);
  }
})();
