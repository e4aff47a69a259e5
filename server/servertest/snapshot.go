package servertest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

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
