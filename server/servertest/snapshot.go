package servertest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// Answer is an HTTP answer as a test reads it: its status, header and whole body.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
}

// Fetch is GET url with hc (nil: a client that gives up after 10 s, so that a gateway
// that stopped answering fails the test instead of hanging it), reading the whole
// answer; a request or body that fails fails t.
func Fetch(t testing.TB, hc *http.Client, url string) Answer {
	t.Helper()
	if hc == nil {
		hc = metricsClient
	}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: HTTP %d, body: %v", url, resp.StatusCode, err)
	}
	return Answer{resp.StatusCode, resp.Header, body}
}

// GetJSON is GET url (a gateway's snapshot, /v1/matches/{id}) decoding the JSON body of
// a 200 answer into v; any other answer is an error naming its status and body.
func GetJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

// MustGetJSON is GetJSON decoding into a T, failing t on an error.
func MustGetJSON[T any](t testing.TB, url string) T {
	t.Helper()
	var v T
	if err := GetJSON(url, &v); err != nil {
		t.Fatal(err)
	}
	return v
}
