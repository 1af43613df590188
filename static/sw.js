// Service worker of the Deepfake Audio studio, served at /sw.js so its scope is the whole site.
//
// - The app shell (offline page, manifest, icons) is cached at install, in a cache named
//   after the shell version; the server fills in the version from a hash of the shell
//   files and the Gradio release, so any change makes a new cache and this file changes.
// - Gradio's own static bundles (/assets/, /static/) have content-hashed or versioned
//   names: they are served from the cache once fetched.
// - Pages always come from the network; when it is unreachable, the offline page.
// - Nothing else is cached: API calls, queue streams, uploads and generated audio always
//   go to the server, so private recordings never land in a cache.

const VERSION = "__SHELL_VERSION__";
const PREFIX = "deepfake-audio-shell-";
const CACHE = PREFIX + VERSION;
const OFFLINE_URL = "/offline.html";
const SHELL = [
  OFFLINE_URL,
  "/manifest.json",
  "/pwa/icons/icon-192.png",
  "/pwa/icons/icon-512.png",
  "/pwa/icons/icon-maskable-512.png",
  "/pwa/icons/favicon.png",
];
const STATIC_PREFIXES = ["/assets/", "/static/", "/pwa/icons/"];
const NEVER_CACHE_PREFIXES = ["/gradio_api/", "/config", "/queue", "/upload", "/file=", "/stream", "/run/", "/api/"];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches.open(CACHE)
      .then((cache) => cache.addAll(SHELL.map((url) => new Request(url, { cache: "reload" }))))
      .then(() => self.skipWaiting())
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys
        .filter((key) => key.startsWith(PREFIX) && key !== CACHE)
        .map((key) => caches.delete(key))))
      .then(() => self.clients.claim())
  );
});

function isPrivate(url, request) {
  return NEVER_CACHE_PREFIXES.some((prefix) => url.pathname.startsWith(prefix))
    || request.headers.has("range")
    || request.destination === "audio"
    || request.destination === "video"
    || /\.(wav|mp3|flac|ogg|opus|m4a|webm)$/i.test(url.pathname);
}

async function fromCacheThenNetwork(request) {
  const cache = await caches.open(CACHE);
  const hit = await cache.match(request);
  if (hit) {
    return hit;
  }
  const response = await fetch(request);
  const type = response.headers.get("content-type") || "";
  if (response.ok && response.type === "basic" && !type.startsWith("audio/")) {
    cache.put(request, response.clone());
  }
  return response;
}

async function pageOrOffline(request) {
  try {
    return await fetch(request);
  } catch (error) {
    const offline = await caches.match(OFFLINE_URL);
    return offline || new Response("Offline", { status: 503, headers: { "Content-Type": "text/plain" } });
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") {
    return;
  }
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) {
    return;
  }
  if (request.mode === "navigate") {
    event.respondWith(pageOrOffline(request));
    return;
  }
  if (isPrivate(url, request)) {
    return;  // straight to the network, never stored
  }
  if (SHELL.includes(url.pathname) || STATIC_PREFIXES.some((prefix) => url.pathname.startsWith(prefix))) {
    event.respondWith(fromCacheThenNetwork(request));
  }
});
