package server

import (
	"bytes"
	"compress/gzip"
	"hash/crc32"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// Compression on the HTTP listener: snapshots and the page's files (the browser client
// among them) are sent gzip-encoded to a client whose Accept-Encoding allows it. Each
// body is compressed once and kept while it is current: a reconnect storm fetching one
// snapshot at one seq compresses it once, not once per client.

// minGzip is the smallest body worth compressing: below it gzip's 18-byte frame and a
// Content-Encoding header eat what is saved.
const minGzip = 256

// gzipCacheEntries bounds the compressed bodies kept (one per match or file); when full
// the cache starts over, which costs a compression per body, never correctness.
const gzipCacheEntries = 4096

// gzipCache keeps the compressed form of the latest body under each key.
type gzipCache struct {
	mu sync.Mutex
	m  map[string]gzipEntry
}

type gzipEntry struct {
	tag string // what identifies the body: a snapshot's ETag, a file's CRC
	n   int    // the uncompressed length, a second check of identity
	gz  []byte
}

var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.DefaultCompression)
	return w
}}

// get returns raw compressed, from the cache when key's entry has the same tag.
func (c *gzipCache) get(key, tag string, raw []byte) []byte {
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && e.tag == tag && e.n == len(raw) {
		return e.gz
	}
	var buf bytes.Buffer
	buf.Grow(len(raw)/4 + 64)
	w := gzipWriters.Get().(*gzip.Writer)
	w.Reset(&buf)
	_, _ = w.Write(raw)
	_ = w.Close()
	gzipWriters.Put(w)
	gz := buf.Bytes()
	c.mu.Lock()
	if c.m == nil || len(c.m) >= gzipCacheEntries {
		c.m = make(map[string]gzipEntry)
	}
	c.m[key] = gzipEntry{tag: tag, n: len(raw), gz: gz}
	c.mu.Unlock()
	return gz
}

// writeBody writes body (a complete response of status 200) gzip-encoded when r
// accepts it and it is worth it, identity otherwise. Content-Type and the validators
// are the caller's; Vary and Content-Length are set here.
func (c *gzipCache) writeBody(w http.ResponseWriter, r *http.Request, key, tag string, body []byte) {
	h := w.Header()
	h.Add("Vary", "Accept-Encoding")
	if len(body) >= minGzip && acceptsGzip(strings.Join(r.Header.Values("Accept-Encoding"), ",")) {
		if gz := c.get(key, tag, body); len(gz) < len(body) {
			h.Set("Content-Encoding", "gzip")
			body = gz
		}
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// gzipFiles serves next (the page) with its 200 answers compressed when asked. The
// answers are taken whole (the page's files are a few KB each), keyed by path and
// recognised by their CRC, so each file is compressed once.
func (c *gzipCache) gzipFiles(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		rec := &recorder{header: http.Header{}, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		if rec.status != http.StatusOK || rec.header.Get("Content-Encoding") != "" {
			w.WriteHeader(rec.status)
			_, _ = w.Write(rec.body.Bytes())
			return
		}
		body := rec.body.Bytes()
		if r.Method == http.MethodHead {
			// A HEAD answer has no body to measure: send what the handler said.
			w.WriteHeader(http.StatusOK)
			return
		}
		c.writeBody(w, r, "file:"+r.URL.Path, strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 16), body)
	})
}

// recorder is an http.ResponseWriter that keeps the answer.
type recorder struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(status int) {
	if !r.wrote {
		r.status, r.wrote = status, true
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	r.wrote = true
	return r.body.Write(p)
}
