package report

import "testing"

func TestMergeHists(t *testing.T) {
	enc := func(vs ...int64) string {
		h := NewHist()
		for _, v := range vs {
			if err := h.RecordValue(v); err != nil {
				t.Fatal(err)
			}
		}
		return EncodeHist(h)
	}
	lines := []Line{{Hist: enc(100, 200)}, {}, {Hist: "not base64!"}, {Hist: enc(300), WindowHist: enc(1, 2, 3, 4)}}
	h := MergeHists(lines, func(ln Line) string { return ln.Hist })
	if h.TotalCount() != 3 || h.Max() < 300 || h.Min() > 100 {
		t.Fatalf("merged %d values, %d..%d; want the 3 of the lines that have one", h.TotalCount(), h.Min(), h.Max())
	}
	if w := MergeHists(lines, func(ln Line) string { return ln.WindowHist }); w.TotalCount() != 4 {
		t.Fatalf("window: %d values, want 4", w.TotalCount())
	}
}
