package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// snapReq asks for the snapshot of one subscription (c.subs[sub]) on behalf of its
// worker; gen is c.gen when asked, so that an answer for a connection that closed since
// is dropped.
type snapReq struct {
	c     *conn
	gen   uint32
	sub   int
	match string
	w     *worker
}

// snapResult is a decoded answer of GET /v1/matches/{id}: seq 0 and a nil state for a
// match that has not started (404). err means no usable answer (the request is asked
// again).
type snapResult struct {
	c          *conn
	gen        uint32
	sub        int
	epoch, seq uint64
	state      any
	hash       uint64
	err        bool
}

// snapshotter fetches REST snapshots for the workers with a few keep-alive HTTP
// connections, one request per subscription that asks (as every real client does), over
// the gateways' HTTP addresses in turn.
type snapshotter struct {
	bases  []string
	next   atomic.Uint64
	client *http.Client
	queue  chan snapReq
	ok     atomic.Int64
	errs   atomic.Int64
	wg     sync.WaitGroup
}

func newSnapshotter(bases []string, workers, queue int) *snapshotter {
	s := &snapshotter{
		bases: bases,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers, IdleConnTimeout: time.Minute}},
		queue: make(chan snapReq, queue),
	}
	for range workers {
		s.wg.Add(1)
		go s.loop()
	}
	return s
}

// offer queues r unless the queue is full. It never blocks: the worker asking must go
// on reading its sockets (askSnapshot).
func (s *snapshotter) offer(r snapReq) bool {
	select {
	case s.queue <- r:
		return true
	default:
		return false
	}
}

func (s *snapshotter) loop() {
	defer s.wg.Done()
	for r := range s.queue {
		res := snapResult{c: r.c, gen: r.gen, sub: r.sub}
		snap, err := s.fetch(context.Background(), r.match)
		if err != nil {
			s.errs.Add(1)
			res.err = true
			// Back off a little so that a gateway answering 503 is not hammered.
			time.Sleep(50 * time.Millisecond)
		} else {
			s.ok.Add(1)
			res.epoch, res.seq, res.state, res.hash = snap.epoch, snap.seq, snap.state, snap.hash
		}
		r.w.snapq <- res
		r.w.wake()
	}
}

type snapshot struct {
	epoch, seq uint64
	state      any
	hash       uint64
}

// fetch GETs the snapshot of match from the next base address.
func (s *snapshotter) fetch(ctx context.Context, match string) (snapshot, error) {
	base := s.bases[s.next.Add(1)%uint64(len(s.bases))]
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/matches/"+url.PathEscape(match), nil)
	if err != nil {
		return snapshot{}, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return snapshot{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return snapshot{}, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		// Not started yet: the state before seq 1 is nothing.
		return snapshot{hash: canonHash(nil)}, nil
	default:
		return snapshot{}, fmt.Errorf("GET %s: %s: %s", req.URL, resp.Status, strings.TrimSpace(string(body)))
	}
	return parseSnapshot(body)
}

// parseSnapshot decodes {"match","seq","state"} (and "epoch" when the publisher sets
// one; other fields are ignored).
func parseSnapshot(body []byte) (snapshot, error) {
	var raw struct {
		Seq   uint64          `json:"seq"`
		Epoch json.RawMessage `json:"epoch"`
		State json.RawMessage `json:"state"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return snapshot{}, fmt.Errorf("snapshot: %v", err)
	}
	// The epoch as the frames carry it: a string's value, a number's text.
	epoch := strings.TrimSpace(string(raw.Epoch))
	if epoch == "null" {
		epoch = ""
	}
	if len(epoch) >= 2 && epoch[0] == '"' {
		if err := json.Unmarshal(raw.Epoch, &epoch); err != nil {
			return snapshot{}, fmt.Errorf("snapshot epoch: %v", err)
		}
	}
	var state any
	if len(raw.State) > 0 {
		if err := decodeJSON(raw.State, &state); err != nil {
			return snapshot{}, fmt.Errorf("snapshot state: %v", err)
		}
	}
	return snapshot{epoch: epochKey(epoch), seq: raw.Seq, state: state, hash: canonHash(state)}, nil
}

// wake interrupts the worker's epoll_wait (its eventfd), so that a snapshot is taken as
// soon as it arrives.
func (w *worker) wake() {
	var one = [8]byte{1}
	_, _ = unix.Write(w.evfd, one[:])
}
