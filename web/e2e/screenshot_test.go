package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"crease/server"
	"crease/server/servertest"
)

// TestScreenshots takes the page at a phone size and a desktop size, late in the chase of
// a real match, with its commentary. It writes them to os.TempDir() always, and to
// testdata/screenshot-{phone,desktop}.png with CREASE_SCREENSHOTS=1 (the README's
// docs/scoreboard*.png are copies of those).
func TestScreenshots(t *testing.T) {
	ctx := newTab(t, 60*time.Second)
	m := servertest.RealMatch(t)
	rec, _, base := pageGateway(t, server.Options{})

	// Open the page first, so that the commentary of the last balls is on it, then replay
	// quickly up to a few balls before the end of the match.
	navigate(t, ctx, base, m.ID())
	waitView(t, ctx, 15*time.Second, "connected", func(v view) bool { return v.Status == "live" })
	stopAt := uint64(m.Deliveries() - 6)
	stopped := make(chan struct{})
	rec.after = func(seq uint64) {
		if seq == stopAt {
			close(stopped)
		}
	}
	rp := startReplay(t, rec, m, 400)
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatalf("replay did not reach seq %d (at %d)", stopAt, rec.lastSeq())
	}
	rp.stop(t)
	v := converge(t, ctx, rp, base, m.ID())
	t.Logf("page at seq %d: %s (%s ov)", v.Seq, v.Score, v.Overs)
	// The match went live after the page loaded its (empty) list: the list must show it
	// now, not after its next 30 s poll.
	listed := `document.querySelector('#matches a[data-match="` + m.ID() + `"]') !== null`
	servertest.Eventually(t, 5*time.Second, func() error {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](listed))
		if err != nil {
			return fmt.Errorf("match list: %w", err)
		}
		if !ok {
			return fmt.Errorf("the match list does not show %s, which is live on the page", m.ID())
		}
		return nil
	})

	for _, shot := range []struct {
		name          string
		width, height int64
		scale         float64
		mobile        bool
	}{
		{"desktop", 1280, 860, 1, false},
		{"phone", 390, 844, 2, true},
	} {
		opts := []chromedp.EmulateViewportOption{chromedp.EmulateScale(shot.scale)}
		if shot.mobile {
			opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulatePortrait)
		}
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(shot.width, shot.height, opts...)); err != nil {
			t.Fatalf("%s: emulate: %v", shot.name, err)
		}
		settle(t, ctx)
		buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("%s: screenshot: %v", shot.name, err)
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(buf))
		if err != nil {
			t.Fatalf("%s: not a PNG: %v", shot.name, err)
		}
		if want := int(float64(shot.width) * shot.scale); cfg.Width != want {
			t.Errorf("%s: %dx%d, want width %d", shot.name, cfg.Width, cfg.Height, want)
		}
		if over, err := chromedp.Run(ctx, chromedp.Evaluate[bool](
			`document.documentElement.scrollWidth > document.documentElement.clientWidth`)); err != nil || over {
			t.Errorf("%s: the page is wider than the viewport (%v)", shot.name, err)
		}
		tmp := filepath.Join(os.TempDir(), "crease-screenshot-"+shot.name+".png")
		if err := os.WriteFile(tmp, buf, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s screenshot (%dx%d): %s", shot.name, cfg.Width, cfg.Height, tmp)
		if os.Getenv("CREASE_SCREENSHOTS") == "1" {
			out := filepath.Join("testdata", "screenshot-"+shot.name+".png")
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(out, buf, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s", out)
		}
	}
}

// settle waits until the page has laid out again and no animation (the score flash) runs.
func settle(t *testing.T, ctx context.Context) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		busy, err := chromedp.Run(ctx, chromedp.Evaluate[bool](
			`new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(() =>
			  ok(document.getAnimations().some((a) => a.playState === "running")))))`, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("settle: %v", err)
		}
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			t.Logf("settle: animations still running after 5 s")
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
