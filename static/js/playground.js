// The playground: posts the conversation to the portal's playground endpoint (session and
// CSRF; the key is picked by id, its secret never sent) and shows the answer as it streams.
// The conversation is kept in this page only. No dependencies.
"use strict";

(function () {
  const form = document.getElementById("playground");
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const conversation = $("pg-conversation");
  const errorBox = $("pg-error");
  const chargeBox = $("pg-charge");
  const send = form.querySelector("[data-testid=pg-send]");
  let history = [];

  function turn(role, text) {
    const box = document.createElement("div");
    box.className = "turn " + role;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "You" : "Model";
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    box.append(who, body);
    conversation.append(box);
    return body;
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function chatUrl() {
    const template = form.dataset.urlTemplate;
    return template.replace("00000000-0000-0000-0000-000000000000", $("pg-key").value);
  }

  function requestBody() {
    const system = $("pg-system").value.trim();
    const messages = system ? [{ role: "system", content: system }] : [];
    const body = {
      model: $("pg-model").value,
      messages: messages.concat(history),
      stream: true,
      stream_options: { include_usage: true },
    };
    const maxTokens = parseInt($("pg-max").value, 10);
    if (maxTokens > 0) body.max_tokens = maxTokens;
    return body;
  }

  // Reads the server-sent events; calls onData for each data: JSON, onCharge for Anvil's
  // closing ": anvil {...}" comment.
  async function readEvents(response, onData, onCharge) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of event.split("\n")) {
          if (line.startsWith("data: ") && line !== "data: [DONE]") onData(JSON.parse(line.slice(6)));
          else if (line.startsWith(": anvil ")) onCharge(JSON.parse(line.slice(8)));
        }
      }
    }
  }

  async function refusal(response) {
    try {
      const body = await response.json();
      return (body.error && body.error.message) || response.statusText;
    } catch {
      return "The request failed (" + response.status + " " + response.statusText + ").";
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const prompt = $("pg-prompt").value.trim();
    if (!prompt) return;
    errorBox.hidden = true;
    chargeBox.hidden = true;
    history.push({ role: "user", content: prompt });
    turn("user", prompt);
    $("pg-prompt").value = "";
    send.disabled = true;
    const csrf = form.querySelector("[name=csrfmiddlewaretoken]").value;
    let answer = null;
    let text = "";
    let usage = null;
    let charge = null;
    try {
      const response = await fetch(chatUrl(), {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify(requestBody()),
        credentials: "same-origin",
      });
      if (!response.ok) {
        history.pop();
        showError(await refusal(response));
        return;
      }
      answer = turn("assistant", "");
      await readEvents(
        response,
        (data) => {
          if (data.error) showError(data.error.message);
          const delta = data.choices && data.choices[0] && data.choices[0].delta;
          if (delta && delta.content) {
            text += delta.content;
            answer.textContent = text;
          }
          if (data.usage) usage = data.usage;
        },
        (charged) => { charge = charged; },
      );
      history.push({ role: "assistant", content: text });
      const parts = [];
      if (usage) parts.push(usage.prompt_tokens + " prompt and " + usage.completion_tokens + " completion tokens");
      if (charge) parts.push(charge.credits_charged + " credits charged");
      if (charge && charge.remaining !== null) parts.push(charge.remaining + " left");
      chargeBox.textContent = parts.join(" · ");
      chargeBox.hidden = parts.length === 0;
    } catch (error) {
      showError("The connection failed: " + error.message);
    } finally {
      send.disabled = false;
    }
  });

  $("pg-clear").addEventListener("click", () => {
    history = [];
    conversation.replaceChildren();
    errorBox.hidden = true;
    chargeBox.hidden = true;
  });
})();
