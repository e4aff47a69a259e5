// Tokens of the crease client: the `exp` of a JWT and when to replace it.

/** The default time before a token's `exp` at which a fresh one is fetched and sent. */
export const DEFAULT_TOKEN_REFRESH_MARGIN_MS = 30000;

/** A connection asks for a fresh token at most this often, whatever the tokens' lifetime. */
export const MIN_TOKEN_REFRESH_MS = 1000;

function base64URLDecode(s) {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/");
  const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
  const bin = globalThis.atob(padded);
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

/**
 * The `exp` claim of a JWT in milliseconds since the Unix epoch, read without checking
 * the signature (the gateway checks it; the client only needs to know when to refresh),
 * or undefined for a token that is not a JWT or has no numeric `exp`.
 */
export function tokenExpiryMs(token) {
  if (typeof token !== "string") return undefined;
  const parts = token.split(".");
  if (parts.length !== 3) return undefined;
  try {
    const claims = JSON.parse(base64URLDecode(parts[1].replace(/=+$/, "")));
    const exp = claims && claims.exp;
    if (typeof exp !== "number" || !Number.isFinite(exp) || exp <= 0 || exp > 2 ** 40) return undefined;
    return exp * 1000;
  } catch {
    return undefined;
  }
}

/**
 * How long after now (ms) a token expiring at expMs is replaced: marginMs before it, but
 * never later than half its remaining lifetime (a short-lived token is not refreshed at
 * once), and never sooner than MIN_TOKEN_REFRESH_MS.
 */
export function tokenRefreshDelay(nowMs, expMs, marginMs = DEFAULT_TOKEN_REFRESH_MARGIN_MS) {
  const left = expMs - nowMs;
  return Math.max(left - Math.min(marginMs, left / 2), MIN_TOKEN_REFRESH_MS);
}

/**
 * A token source over the `token` option: a string, or a function returning a token or
 * a promise of one. fresh() asks for a token (a string is returned as it is) and keeps
 * it as the current one.
 */
export function tokenSource(option) {
  let current = typeof option === "string" && option !== "" ? option : undefined;
  let expMs = tokenExpiryMs(current);
  return {
    /** Whether a token is used at all. */
    enabled: option !== undefined && option !== null && option !== "",
    /** Whether fresh() may return another token than the last (a function). */
    refreshable: typeof option === "function",
    get current() {
      return current;
    },
    get expMs() {
      return expMs;
    },
    async fresh() {
      const tok = typeof option === "function" ? await option() : option;
      if (typeof tok !== "string" || tok === "") throw new Error("crease: the token provider returned no token");
      current = tok;
      expMs = tokenExpiryMs(tok);
      return { token: tok, expMs };
    },
  };
}
