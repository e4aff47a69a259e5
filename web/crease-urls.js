// URLs of the crease client: where the gateway's WebSocket and HTTP listeners are.

/** The gateway's HTTP listener port when nothing else is said (PROTOCOL.md). */
export const DEFAULT_HTTP_PORT = "8081";

/** The WebSocket URL when /config.json is unavailable: the page's host, port 8080. */
export function defaultWsURL(loc = globalThis.location) {
  if (!loc) return "ws://localhost:8080/ws";
  const scheme = loc.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${loc.hostname || "localhost"}:8080/ws`;
}

/**
 * The gateway's HTTP base (for snapshots) derived from its WebSocket URL: ws -> http,
 * wss -> https, the same host, the HTTP listener's port (8081 unless said). The Go
 * client derives it the same way.
 */
export function httpBaseFromWsURL(wsURL, port = DEFAULT_HTTP_PORT) {
  const u = new URL(wsURL);
  const scheme = u.protocol === "wss:" || u.protocol === "https:" ? "https:" : "http:";
  return `${scheme}//${u.hostname}:${port}`;
}

/** withQuery adds key=value to a URL's query (catchup=1). */
export function withQuery(target, key, value) {
  try {
    const u = new URL(target);
    u.searchParams.set(key, value);
    return u.toString();
  } catch {
    return target + (target.includes("?") ? "&" : "?") + `${key}=${encodeURIComponent(value)}`;
  }
}
