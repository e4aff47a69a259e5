// Package e2e drives the live scoreboard page of package web in a real headless Chromium
// (through chromedp) against real gateways (server/servertest) fed by a real match
// replaying on the embedded bus. It has only tests:
//
//   - the page shows the score of the REST snapshot at the same seq while a match replays;
//   - when the gateway dies the page says `reconnecting`, and it converges again on a
//     new gateway started on the same ports with the same bus;
//   - a server-sent `resync` makes the page refetch the snapshot over the connection it
//     has, without a new WebSocket;
//   - screenshots of the page at a phone size and a desktop size (written to
//     os.TempDir() always, and to testdata/ with CREASE_SCREENSHOTS=1).
//
// The browser is /usr/bin/chromium (or CREASE_CHROMIUM, or chromium on PATH), started
// once for the package with a fresh temporary profile; each test has its own tab. When
// it is missing the tests skip, unless the environment variable CI is set, where they
// fail (`make test` installs it with scripts/ensure-deps.sh).
package e2e
