package publish

import (
	"testing"
	"time"
)

// The remembered answers are bounded in count (the oldest forgotten first) and in age.
func TestIdempotencyCacheIsBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := newIdemCache(3, time.Hour, func() time.Time { return now })
	for i, k := range []string{"a", "b", "c", "d"} {
		c.put("m", k, idemEntry{status: 200 + i})
	}
	if c.len() != 3 {
		t.Fatalf("%d answers kept, bound 3", c.len())
	}
	if _, ok := c.get("m", "a"); ok {
		t.Fatal("the oldest answer is still there past the count bound")
	}
	if e, ok := c.get("m", "d"); !ok || e.status != 203 {
		t.Fatalf("newest: %+v %v", e, ok)
	}
	if _, ok := c.get("other", "d"); ok {
		t.Fatal("keys are per match")
	}
	now = now.Add(30 * time.Minute)
	c.put("m", "e", idemEntry{status: 299})
	now = now.Add(31 * time.Minute) // b, c, d are 61 minutes old, e 31
	if _, ok := c.get("m", "b"); ok {
		t.Fatal("an answer older than the TTL is still there")
	}
	if c.len() != 1 {
		t.Fatalf("%d answers kept after expiry", c.len())
	}
	if _, ok := c.get("m", "e"); !ok {
		t.Fatal("a young answer expired")
	}
}
