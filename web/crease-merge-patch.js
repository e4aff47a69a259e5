// RFC 7396 JSON Merge Patch for the crease client (see crease-client.js).

function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

// Assigning "__proto__" would change the prototype instead of adding a key, and JSON
// from the wire can hold that key.
function setKey(obj, k, v) {
  if (k === "__proto__") {
    Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true });
  } else {
    obj[k] = v;
  }
}

/**
 * RFC 7396 JSON Merge Patch. Returns the patched value and leaves target untouched
 * (objects on the patched path are copied), so callers can compare old and new states.
 */
export function mergePatch(target, patch) {
  if (!isObject(patch)) return patch;
  const out = {};
  if (isObject(target)) {
    for (const k of Object.keys(target)) setKey(out, k, target[k]);
  }
  for (const k of Object.keys(patch)) {
    const v = patch[k];
    if (v === null) {
      delete out[k];
    } else {
      setKey(out, k, mergePatch(Object.prototype.hasOwnProperty.call(out, k) ? out[k] : undefined, v));
    }
  }
  return out;
}
