// Package mergepatch composes RFC 7396 JSON merge patches: a run of patches p1..pn becomes
// one patch P with apply(T, P) == apply(...apply(T, p1)..., pn) for every document T,
// which is what a catch-up delta (PROTOCOL.md `from`) needs.
//
// The composition is exact except where an object patch lands on a path that an earlier
// patch of the run set to a non-object (a number, string, array, true, false) or deleted
// (null): merge patch has no way to say "replace this member by exactly this object", so
// no single patch reaches the run's result from every document. Compose reports that
// (exact false) instead of guessing. A path set to a non-object and later overwritten by
// another non-object is fine: the composition takes the last value.
//
// When Compose says exact, P is equivalent to the run on every document, and it also
// reaches the run's last state from any intermediate one: apply(state_k, P) == state_n
// for every k in 0..n-1, which is what `from` promises. At every path P sets, the values
// the run gives it are, in order, either all objects (P merges them, and so does any
// tail of the run) or end with the non-object P takes; a state_k that the tail of the
// run leaves untouched there already holds that value, written by the head. The
// property and fuzz tests check exactly that, on random documents and runs.
//
// What it owns: the composition (Composer, Compose) and a validating JSON scanner used by
// it (Member reads one member of an object, for taking the patch out of a delta frame).
// It holds no state between calls beyond a Composer's reusable scratch memory.
//
// Cost: one validating pass over each patch (a structural index: the end of every
// object, array and string), then one pass per object level that two or more patches of
// the run share, with its members sorted by key. Work is linear in the bytes given (plus
// the sort), never quadratic in nesting depth, and a Composer allocates nothing in the
// steady state (keys with escapes or invalid UTF-8 aside), so it can run on an event
// loop; callers bound the bytes they hand it.
//
// Concurrency: Compose and Member are safe for concurrent use; a Composer is not (each
// event loop keeps its own).
package mergepatch
