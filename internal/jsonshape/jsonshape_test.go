package jsonshape

import (
	"reflect"
	"slices"
	"testing"
)

type inner struct {
	A int `json:"a"`
}

type outer struct {
	inner
	B      string  `json:"b,omitempty"`
	C      *int    `json:"c"`
	D      *int    `json:"d,omitzero"`
	E      int     `json:"-"`
	F      float64 // no tag
	hidden int
}

func TestMembers(t *testing.T) {
	m, n := Members(reflect.TypeFor[outer]())
	if want := []string{"F", "a", "b?", "c", "d?"}; !slices.Equal(m, want) {
		t.Errorf("members %v, want %v", m, want)
	}
	if want := []string{"outer.C"}; !slices.Equal(n, want) {
		t.Errorf("nullable %v, want %v", n, want)
	}
	_ = outer{}.hidden
}
