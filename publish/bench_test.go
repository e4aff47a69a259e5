package publish_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"

	"crease/bus"
	"crease/publish"
)

// BenchmarkPostBall: the publish API's own cost per ball (decode, score, merge patch,
// store step on the embedded bus, commentary event), without the network.
func BenchmarkPostBall(b *testing.B) {
	f := realFeed(b, "1298150")
	bodies := make([][]byte, len(f.balls))
	for i, bl := range f.balls {
		bodies[i], _ = json.Marshal(bl)
	}
	a, err := publish.New(publish.Options{Bus: bus.NewEmbedded(), Keys: []string{"k"}, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	send := func(method, path string, body []byte) {
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer k")
		w := httptest.NewRecorder()
		a.ServeHTTP(w, req)
		if w.Code >= 300 {
			b.Fatalf("%s %s: %d %s", method, path, w.Code, w.Body)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m, k := i/len(bodies), i%len(bodies)
		id := fmt.Sprintf("m%d", m)
		if k == 0 {
			b.StopTimer()
			send("PUT", "/v1/matches/"+id, f.start)
			b.StartTimer()
		}
		send("POST", "/v1/matches/"+id+"/deliveries", bodies[k])
	}
}
