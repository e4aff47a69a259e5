// Package livefeed turns a Cricsheet match file into what a score provider posts to the
// publish API (PROTOCOL.md "Publishing (HTTP)"), for the tests and benchmarks that
// drive crease as a provider would: the match info without its outcome (PUT
// /v1/matches/{id}), every ball at its position in order (POST .../deliveries), and the
// info with its outcome, which finishes the match.
//
// It only reshapes JSON: what the balls mean is package ingest's. Everything here runs
// on the caller's goroutine.
package livefeed

import (
	"encoding/json"
	"fmt"
)

// Feed is one match as a provider posts it.
type Feed struct {
	Start json.RawMessage   // the info without its outcome: the match is live
	End   json.RawMessage   // the info with its outcome: the result
	Balls []json.RawMessage // the deliveries bodies, in order
}

// Ball is the body of one delivery: its position (innings counted from 1 over all
// innings, super overs included; over from 0 as in Cricsheet; ball from 1 within the
// over), the batting team, the Cricsheet delivery, and the innings' target (a revised
// one, as Cricsheet gives it) with the innings' first ball.
type Ball struct {
	Innings   int             `json:"innings"`
	Team      string          `json:"team"`
	SuperOver bool            `json:"super_over,omitempty"`
	Over      int             `json:"over"`
	Ball      int             `json:"ball"`
	Delivery  json.RawMessage `json:"delivery"`
	Target    json.RawMessage `json:"target,omitempty"`
}

// FromFile reads a Cricsheet JSON match file.
func FromFile(data []byte) (Feed, error) {
	var file struct {
		Info    map[string]json.RawMessage `json:"info"`
		Innings []struct {
			Team      string          `json:"team"`
			SuperOver bool            `json:"super_over"`
			Target    json.RawMessage `json:"target"`
			Overs     []struct {
				Over       int               `json:"over"`
				Deliveries []json.RawMessage `json:"deliveries"`
			} `json:"overs"`
		} `json:"innings"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return Feed{}, fmt.Errorf("livefeed: %w", err)
	}
	if file.Info == nil {
		return Feed{}, fmt.Errorf("livefeed: no info")
	}
	var f Feed
	var err error
	if f.End, err = json.Marshal(file.Info); err != nil {
		return Feed{}, fmt.Errorf("livefeed: %w", err)
	}
	delete(file.Info, "outcome")
	if f.Start, err = json.Marshal(file.Info); err != nil {
		return Feed{}, fmt.Errorf("livefeed: %w", err)
	}
	for i, inn := range file.Innings {
		first := true
		for _, o := range inn.Overs {
			for bi, d := range o.Deliveries {
				b := Ball{Innings: i + 1, Team: inn.Team, SuperOver: inn.SuperOver, Over: o.Over, Ball: bi + 1, Delivery: d}
				if first && len(inn.Target) > 0 && string(inn.Target) != "null" {
					b.Target = inn.Target
				}
				first = false
				body, err := json.Marshal(b)
				if err != nil {
					return Feed{}, fmt.Errorf("livefeed: innings %d over %d ball %d: %w", i+1, o.Over, bi+1, err)
				}
				f.Balls = append(f.Balls, body)
			}
		}
	}
	return f, nil
}
