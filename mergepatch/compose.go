package mergepatch

import (
	"bytes"
	"encoding/json"
	"slices"
	"unicode/utf8"
)

// Composer composes runs of merge patches, keeping its scratch memory from one call to
// the next. The zero value is ready to use. It is not safe for concurrent use.
type Composer struct {
	patches [][]byte
	ends    []int32 // the structural index of every patch, patch i at base[i]
	base    []int
	ents    []entry // members of the object levels being composed, a stack of regions
	refs    []ref   // values being composed, a stack of regions
}

// ref is one value: patch p, bytes [start, end).
type ref struct{ p, start, end int32 }

// entry is one member of an object of a level being composed.
type entry struct {
	key    []byte // the member name, decoded
	kStart int32  // the name as written, quotes included: patches[v.p][kStart:kEnd]
	kEnd   int32
	ord    int32 // which object of the level (their order is the patches' order)
	v      ref
}

// Compose is Composer.Compose with a Composer of its own.
func Compose(patches ...[]byte) (patch []byte, exact bool, err error) {
	var c Composer
	return c.Compose(nil, patches)
}

// Compose appends to dst one merge patch equivalent to applying patches in order, and
// reports exact. When exact is false (an object patch lands on a path that an earlier
// patch set to a non-object or deleted) or err is not nil (a patch is not valid JSON,
// ErrInvalid), dst is returned unchanged. No patches compose to {}. The patches are only
// read; the result shares no memory with them.
func (c *Composer) Compose(dst []byte, patches [][]byte) (patch []byte, exact bool, err error) {
	if len(patches) == 0 {
		return append(dst, "{}"...), true, nil
	}
	defer c.reset()
	c.patches = patches
	total := 0
	for _, p := range patches {
		total += len(p)
	}
	if total > maxLen {
		return dst, false, ErrInvalid
	}
	if cap(c.ends) < total {
		c.ends = make([]int32, total)
	}
	c.ends = c.ends[:total]
	c.base = c.base[:0]
	c.refs = c.refs[:0]
	at := 0
	for i, p := range patches {
		start, end, err := index(p, c.ends[at:at+len(p)])
		if err != nil {
			return dst, false, err
		}
		c.base = append(c.base, at)
		c.refs = append(c.refs, ref{p: int32(i), start: int32(start), end: int32(end)})
		at += len(p)
	}
	out, ok := c.group(dst, 0, len(c.refs))
	if !ok {
		return dst, false, nil
	}
	return out, true, nil
}

func (c *Composer) reset() {
	clear(c.ents[:cap(c.ents)]) // drop the references to the patches and decoded keys
	c.ents = c.ents[:0]
	c.refs = c.refs[:0]
	c.patches = nil
}

// group appends the composition of the values c.refs[lo:hi], the values one path takes
// in the run, in order. The last non-object value replaces everything before it; objects
// after it cannot be expressed (not exact); objects alone merge member by member.
func (c *Composer) group(dst []byte, lo, hi int) ([]byte, bool) {
	last := -1
	for i := lo; i < hi; i++ {
		if !c.isObject(c.refs[i]) {
			last = i
		}
	}
	switch {
	case last == hi-1:
		return append(dst, c.bytes(c.refs[last])...), true
	case last >= 0:
		return dst, false
	case hi-lo == 1:
		// One object: as written, duplicate members included (every reader takes the
		// last of them, as a merge would).
		return append(dst, c.bytes(c.refs[lo])...), true
	}
	return c.objects(dst, lo, hi)
}

func (c *Composer) isObject(r ref) bool { return c.patches[r.p][r.start] == '{' }

func (c *Composer) bytes(r ref) []byte { return c.patches[r.p][r.start:r.end] }

// objects appends the composition of the objects c.refs[lo:hi]: their members sorted by
// name (stably, so the patches' order stays within a name), each name's values composed
// as a group. Of duplicate names within one object only the last counts, as for every
// JSON reader the clients use.
func (c *Composer) objects(dst []byte, lo, hi int) ([]byte, bool) {
	eLo := len(c.ents)
	for o := lo; o < hi; o++ {
		c.members(c.refs[o], int32(o-lo))
	}
	eHi := len(c.ents)
	slices.SortStableFunc(c.ents[eLo:eHi], func(a, b entry) int { return bytes.Compare(a.key, b.key) })
	dst = append(dst, '{')
	for i := eLo; i < eHi; {
		k := i + 1
		for k < eHi && bytes.Equal(c.ents[k].key, c.ents[i].key) {
			k++
		}
		rLo := len(c.refs)
		for x := i; x < k; x++ {
			if x+1 < k && c.ents[x+1].ord == c.ents[x].ord {
				continue // a duplicate name in one object: the last one wins
			}
			c.refs = append(c.refs, c.ents[x].v)
		}
		if i > eLo {
			dst = append(dst, ',')
		}
		e := c.ents[k-1]
		dst = append(dst, c.patches[e.v.p][e.kStart:e.kEnd]...)
		dst = append(dst, ':')
		var ok bool
		dst, ok = c.group(dst, rLo, len(c.refs))
		c.refs = c.refs[:rLo]
		if !ok {
			c.ents = c.ents[:eLo]
			return dst, false
		}
		i = k
	}
	c.ents = c.ents[:eLo]
	return append(dst, '}'), true
}

// members appends the members of object r to c.ents.
func (c *Composer) members(r ref, ord int32) {
	d := c.patches[r.p]
	ends := c.ends[c.base[r.p] : c.base[r.p]+len(d)]
	j := skipSpace(d, int(r.start)+1)
	if d[j] == '}' {
		return
	}
	for {
		kEnd := int(ends[j])
		e := entry{key: decodeName(d[j:kEnd]), kStart: int32(j), kEnd: int32(kEnd), ord: ord}
		v := skipSpace(d, skipSpace(d, kEnd)+1) // past the ':'
		vEnd := valueEnd(d, ends, v)
		e.v = ref{p: r.p, start: int32(v), end: int32(vEnd)}
		c.ents = append(c.ents, e)
		j = skipSpace(d, vEnd)
		if d[j] != ',' {
			return // '}': the text was validated
		}
		j = skipSpace(d, j+1)
	}
}

// decodeName returns the value of a member name (quotes included, validated) as
// encoding/json decodes it: escapes resolved, invalid UTF-8 replaced by U+FFFD. Names
// that need neither are returned as a slice of the input.
func decodeName(q []byte) []byte {
	in := q[1 : len(q)-1]
	plain := true
	for _, b := range in {
		if b == '\\' || b >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain || (bytes.IndexByte(in, '\\') < 0 && utf8.Valid(in)) {
		return in
	}
	var s string
	if json.Unmarshal(q, &s) != nil {
		return in // unreachable: the name was validated
	}
	return []byte(s)
}

// Member returns the value of the member named name of the JSON object obj, the last
// one if the name repeats (as encoding/json and JSON.parse read it); found is false when
// obj has none. err wraps ErrInvalid when obj is not one valid JSON object.
func (c *Composer) Member(obj []byte, name string) (value []byte, found bool, err error) {
	names := [1]string{name}
	var values [1][]byte
	err = c.Members(obj, names[:], values[:])
	return values[0], values[0] != nil, err
}

// Member is Composer.Member with a Composer of its own.
func Member(obj []byte, name string) (value []byte, found bool, err error) {
	var c Composer
	return c.Member(obj, name)
}

// Members reads several members of the JSON object obj in one pass: values[i] is the
// value of the last member named names[i], nil when obj has none. err wraps ErrInvalid
// when obj is not one valid JSON object (values are then all nil).
func (c *Composer) Members(obj []byte, names []string, values [][]byte) error {
	clear(values)
	if cap(c.ends) < len(obj) {
		c.ends = make([]int32, len(obj))
	}
	ends := c.ends[:len(obj)]
	start, _, err := index(obj, ends)
	if err != nil {
		return err
	}
	if obj[start] != '{' {
		return invalid(start, "not an object")
	}
	j := skipSpace(obj, start+1)
	if obj[j] == '}' {
		return nil
	}
	for {
		kEnd := int(ends[j])
		key := decodeName(obj[j:kEnd])
		v := skipSpace(obj, skipSpace(obj, kEnd)+1)
		vEnd := valueEnd(obj, ends, v)
		for i, name := range names {
			if string(key) == name {
				values[i] = obj[v:vEnd]
			}
		}
		j = skipSpace(obj, vEnd)
		if obj[j] != ',' {
			return nil
		}
		j = skipSpace(obj, j+1)
	}
}
