package publish

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"
)

// idemCache remembers the answers of requests that carried an Idempotency-Key, per match
// and key, bounded in count (the oldest is forgotten first) and in age.
type idemCache struct {
	mu    sync.Mutex
	max   int
	ttl   time.Duration
	now   func() time.Time
	order *list.List // of idemKey, oldest first
	byKey map[idemKey]*list.Element
}

type idemKey struct{ match, key string }

type idemEntry struct {
	fingerprint string // method, URI and body of the request the answer belongs to
	status      int
	body        []byte
	at          time.Time
	k           idemKey
}

func newIdemCache(max int, ttl time.Duration, now func() time.Time) *idemCache {
	return &idemCache{max: max, ttl: ttl, now: now, order: list.New(), byKey: map[idemKey]*list.Element{}}
}

func fingerprint(method, uri string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(method + " " + uri + "\n"))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

func (c *idemCache) get(match, key string) (idemEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked()
	el, ok := c.byKey[idemKey{match, key}]
	if !ok {
		return idemEntry{}, false
	}
	return el.Value.(idemEntry), true
}

func (c *idemCache) put(match, key string, e idemEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := idemKey{match, key}
	e.at, e.k = c.now(), k
	if el, ok := c.byKey[k]; ok {
		c.order.Remove(el)
	}
	c.byKey[k] = c.order.PushBack(e)
	for c.order.Len() > c.max {
		c.removeLocked(c.order.Front())
	}
	c.expireLocked()
}

func (c *idemCache) expireLocked() {
	limit := c.now().Add(-c.ttl)
	for el := c.order.Front(); el != nil && el.Value.(idemEntry).at.Before(limit); el = c.order.Front() {
		c.removeLocked(el)
	}
}

func (c *idemCache) removeLocked(el *list.Element) {
	delete(c.byKey, el.Value.(idemEntry).k)
	c.order.Remove(el)
}

// len is the number of remembered answers (for tests).
func (c *idemCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
