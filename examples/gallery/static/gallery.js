// The gallery page: submits prompts, and renders the server's events (no framework).
//
// The server sends the whole history once ("snapshot", also after every reconnect), then
// each changed generation whole ("update"); the page only ever upserts by job id.
"use strict";

const history = document.getElementById("history");
const empty = document.getElementById("empty");
const live = document.getElementById("live");
const form = document.getElementById("generate");
const promptInput = document.getElementById("prompt");
const submit = document.getElementById("submit");
const errorLine = document.getElementById("error");
const template = document.getElementById("card");
const cards = new Map(); // job id -> its <li>

function render(generation) {
  let card = cards.get(generation.job_id);
  if (card === undefined) {
    card = template.content.firstElementChild.cloneNode(true);
    card.dataset.jobId = generation.job_id;
    card.querySelector(".prompt").textContent = generation.prompt;
    card.querySelector(".job-id").textContent = generation.job_id;
    cards.set(generation.job_id, card);
    history.prepend(card); // a new generation is the newest
    empty.hidden = true;
  }
  card.dataset.state = generation.state;
  // Statuses only ever grow: append the new ones, so each appears as it happens.
  const list = card.querySelector(".statuses");
  const start = generation.statuses.length ? generation.statuses[0].at : 0;
  for (const status of generation.statuses.slice(list.children.length)) {
    const item = document.createElement("li");
    item.dataset.kind = status.kind;
    item.textContent = `${status.label} `;
    const when = document.createElement("span");
    when.className = "when";
    when.textContent = `+${(status.at - start).toFixed(2)} s`;
    item.append(when);
    list.append(item);
  }
  const figure = card.querySelector("figure");
  if (generation.image && !figure.querySelector("img")) {
    const img = document.createElement("img");
    img.alt = generation.prompt;
    if (generation.width && generation.height) {
      img.width = generation.width;
      img.height = generation.height;
    }
    img.src = generation.image; // served by the gallery itself
    figure.replaceChildren(img);
  }
  const error = card.querySelector(".error");
  error.hidden = !generation.error;
  error.textContent = generation.error || "";
  if (generation.state === "failed" && !figure.querySelector("img")) {
    figure.querySelector(".placeholder").textContent = "no image";
  }
}

function connect() {
  const source = new EventSource("/api/events");
  source.addEventListener("snapshot", (event) => {
    cards.clear();
    history.replaceChildren();
    const generations = JSON.parse(event.data); // newest first
    empty.hidden = generations.length > 0;
    for (const generation of generations.reverse()) render(generation);
    live.dataset.state = "open";
    live.textContent = "live";
  });
  source.addEventListener("update", (event) => render(JSON.parse(event.data)));
  source.addEventListener("error", () => {
    // EventSource reconnects by itself; the next snapshot brings the page up to date.
    live.dataset.state = "reconnecting";
    live.textContent = "reconnecting\u2026";
  });
}

function showError(message) {
  errorLine.hidden = !message;
  errorLine.textContent = message || "";
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  submit.disabled = true;
  showError("");
  try {
    const response = await fetch("/api/generations", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: promptInput.value }),
    });
    const body = await response.json();
    if (!response.ok) {
      showError(body.error || `error ${response.status}`);
      return;
    }
    // Shown at once; the events bring the rest (and may have brought it already:
    // then the card is theirs, which is never older than this answer).
    if (!cards.has(body.job_id)) render(body);
    promptInput.value = "";
  } catch (error) {
    showError(`the gallery did not answer: ${error}`);
  } finally {
    submit.disabled = false;
  }
});

connect();
