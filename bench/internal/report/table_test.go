package report

import "testing"

func TestTableHead(t *testing.T) {
	for _, c := range []struct {
		cols []string
		want string
	}{
		{[]string{"server", "what"}, "| server | what |\n|---|---|\n"},
		{[]string{"p50 / p99"}, "| p50 / p99 |\n|---|\n"},
		{[]string{"a|b", "c"}, "| a\\|b | c |\n|---|---|\n"},
	} {
		if got := TableHead(c.cols...); got != c.want {
			t.Errorf("TableHead(%q) = %q, want %q", c.cols, got, c.want)
		}
	}
}
