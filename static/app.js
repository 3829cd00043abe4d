// Small page behaviours htmx does not cover: errors during swaps, the
// current-page marker after htmx navigation, copy buttons, and
// keeping token secrets and past sessions out of the browser's history.
(function () {
  "use strict";

  function showAlert(message) {
    const alert = document.getElementById("alert");
    alert.textContent = message;
    alert.hidden = false;
  }

  function markCurrentPage() {
    let best = null;
    for (const link of document.querySelectorAll("nav a[href^='/']")) {
      link.removeAttribute("aria-current");
      const path = link.getAttribute("href");
      const matches = path === "/" ? location.pathname === "/" : location.pathname.startsWith(path);
      if (matches && (!best || path.length > best.getAttribute("href").length)) best = link;
    }
    if (best) best.setAttribute("aria-current", "page");
  }

  document.addEventListener("htmx:beforeRequest", function () {
    document.getElementById("alert").hidden = true;
  });
  // htmx swaps no error response (its default responseHandling): the alert says what went wrong,
  // in the words of our error page (error.html's data-error) when the response is one.
  document.addEventListener("htmx:responseError", function (event) {
    const xhr = event.detail.xhr;
    const error = new DOMParser().parseFromString(xhr.responseText, "text/html").querySelector("[data-error]");
    showAlert(error
      ? `${error.querySelector("h1").textContent} (${xhr.status}): ${error.querySelector("p").textContent}`
      : `Something went wrong (${xhr.status} ${xhr.statusText}). Please try again.`);
  });
  document.addEventListener("htmx:sendError", function () {
    showAlert("The server could not be reached. Check your connection and try again.");
  });
  // (htmx sets the title from the <title> the server puts in each page's fragment.)
  document.addEventListener("htmx:afterSwap", function (event) {
    // event.target, not event.detail.target: a history restore swaps with no detail.target.
    if (event.target.id !== "content") return;
    markCurrentPage();
    document.getElementById("content").focus({ preventScroll: true });
  });
  // htmx's history cache holds snapshots of the pages seen in this tab: none may
  // outlive the session (logout, expiry) into the next visitor's, so any page
  // served signed out (the login page after both) empties it.
  if (document.body.hasAttribute("data-signed-out")) sessionStorage.removeItem("htmx-history-cache");

  // What htmx may not keep (a token's secret, hx-history="false") goes before the
  // back/forward cache freezes the page: Chromium keeps pages there despite
  // Cache-Control: no-store on content htmx swapped in.
  window.addEventListener("pagehide", function () {
    for (const element of document.querySelectorAll("[hx-history='false']")) element.remove();
  });

  // Live figures ([data-live], polled by htmx) skip a refresh nobody would see (a hidden tab) and one
  // that would pull the figures from under the reader: focus inside them (lost on the swap) or a table opened.
  // Here, not in an hx-trigger filter: filters are eval'd, which the Content-Security-Policy forbids.
  document.addEventListener("htmx:confirm", function (event) {
    const live = event.target;
    if (!live.hasAttribute("data-live")) return;
    if (document.hidden || live.contains(document.activeElement) || live.querySelector("details[open]")) event.preventDefault();
  });

  document.addEventListener("htmx:historyRestore", markCurrentPage);
  document.addEventListener("DOMContentLoaded", markCurrentPage);

  document.addEventListener("click", async function (event) {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const source = document.querySelector(button.dataset.copy);
    try {
      await navigator.clipboard.writeText(source.textContent.trim());
      button.textContent = "Copied";
    } catch {
      getSelection().selectAllChildren(source);
      button.textContent = "Press Ctrl+C";
    }
  });
})();
