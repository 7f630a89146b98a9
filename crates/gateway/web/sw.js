// StackSync's service worker: the site installs as an app, its assets
// come from the cache, and the last listing of each folder visited is
// shown when the network is away. `ASSETS` (the hashed asset URLs) is
// prepended by the server. Nothing but same-origin GETs of pages and
// assets is touched; the API and uploads always go to the network.
"use strict";

const STATIC = "stacksync-static-v1";
const PAGES = "stacksync-pages-v1";

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(STATIC)
      .then((c) => c.addAll(ASSETS))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .open(STATIC)
      .then(async (c) => {
        for (const request of await c.keys()) {
          if (!ASSETS.includes(new URL(request.url).pathname)) await c.delete(request);
        }
      })
      .then(() => self.clients.claim()),
  );
});

function offlinePage() {
  return new Response(
    "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Offline - StackSync</title></head><body><h1>You are offline</h1><p>This folder was not opened on this device yet. It shows here once you are back online.</p></body></html>",
    { status: 503, headers: { "Content-Type": "text/html; charset=utf-8" } },
  );
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/assets/")) {
    event.respondWith(caches.match(request).then((hit) => hit || fetch(request)));
    return;
  }
  if (request.mode === "navigate" && url.pathname.startsWith("/files")) {
    // Network first; the last good listing when the network is away.
    event.respondWith(
      fetch(request)
        .then((response) => {
          if (response.ok && !response.redirected) {
            const copy = response.clone();
            caches.open(PAGES).then((c) => c.put(url.pathname, copy));
          }
          return response;
        })
        .catch(() => caches.open(PAGES).then((c) => c.match(url.pathname)).then((hit) => hit || offlinePage())),
    );
  }
});
