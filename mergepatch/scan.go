package mergepatch

import (
	"errors"
	"fmt"
)

// MaxDepth is the deepest nesting of objects and arrays accepted: encoding/json's limit,
// so that this package and the clients' decoders agree on what is valid.
const MaxDepth = 10000

// ErrInvalid wraps every reason a patch or an object is refused: not one valid JSON
// value (RFC 8259), or nested deeper than MaxDepth.
var ErrInvalid = errors.New("mergepatch: invalid JSON")

// maxLen bounds one input: positions are kept as int32.
const maxLen = 1<<31 - 1

// indexer validates one JSON text and records, at the position of every object, array
// and string start, the position just past its end (ends), so that later passes skip a
// value in O(1) whatever it holds.
type indexer struct {
	data  []byte
	ends  []int32 // len(data)
	depth int
}

func invalid(at int, what string) error {
	return fmt.Errorf("%w: offset %d: %s", ErrInvalid, at, what)
}

// index validates data as exactly one JSON value with optional white space around it,
// filling ends (len(data) entries). It returns the value's span.
func index(data []byte, ends []int32) (start, end int, err error) {
	if len(data) > maxLen {
		return 0, 0, fmt.Errorf("%w: %d bytes is too long", ErrInvalid, len(data))
	}
	ix := indexer{data: data, ends: ends}
	start = skipSpace(data, 0)
	end, err = ix.value(start)
	if err != nil {
		return 0, 0, err
	}
	if k := skipSpace(data, end); k != len(data) {
		return 0, 0, invalid(k, "data after the value")
	}
	return start, end, nil
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// value parses the value starting at i (no white space before it) and returns its end.
func (ix *indexer) value(i int) (int, error) {
	d := ix.data
	if i >= len(d) {
		return 0, invalid(i, "unexpected end, a value was expected")
	}
	switch c := d[i]; {
	case c == '{':
		return ix.object(i)
	case c == '[':
		return ix.array(i)
	case c == '"':
		return ix.str(i)
	case c == 't':
		return ix.literal(i, "true")
	case c == 'f':
		return ix.literal(i, "false")
	case c == 'n':
		return ix.literal(i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		return ix.number(i)
	}
	return 0, invalid(i, fmt.Sprintf("%q cannot start a value", d[i]))
}

func (ix *indexer) enter(i int) error {
	ix.depth++
	if ix.depth > MaxDepth {
		return invalid(i, "nested too deep")
	}
	return nil
}

func (ix *indexer) object(i int) (int, error) { return ix.container(i, '}') }

func (ix *indexer) array(i int) (int, error) { return ix.container(i, ']') }

// container parses the object ('}') or array (']') that starts at i (its opening
// bracket) and closes with end: members or values separated by commas.
func (ix *indexer) container(i int, end byte) (int, error) {
	if err := ix.enter(i); err != nil {
		return 0, err
	}
	d := ix.data
	j := skipSpace(d, i+1)
	if j < len(d) && d[j] == end {
		j++
	} else {
		for {
			var err error
			if end == '}' {
				j, err = ix.member(j)
			} else {
				j, err = ix.value(j)
			}
			if err != nil {
				return 0, err
			}
			j = skipSpace(d, j)
			if j < len(d) && d[j] == ',' {
				j = skipSpace(d, j+1)
				continue
			}
			if j < len(d) && d[j] == end {
				j++
				break
			}
			if end == '}' {
				return 0, invalid(j, "',' or '}' was expected in an object")
			}
			return 0, invalid(j, "',' or ']' was expected in an array")
		}
	}
	ix.depth--
	ix.ends[i] = int32(j)
	return j, nil
}

// member parses an object's member starting at j: its name, ':' and its value.
func (ix *indexer) member(j int) (int, error) {
	d := ix.data
	if j >= len(d) || d[j] != '"' {
		return 0, invalid(j, "a member name (a string) was expected")
	}
	k, err := ix.str(j)
	if err != nil {
		return 0, err
	}
	j = skipSpace(d, k)
	if j >= len(d) || d[j] != ':' {
		return 0, invalid(j, "':' was expected after a member name")
	}
	return ix.value(skipSpace(d, j+1))
}

// str parses a string starting at i (the opening quote). Bytes from 0x20 up are taken as
// they are (encoding/json does not check UTF-8 either: it replaces what is invalid when
// decoding).
func (ix *indexer) str(i int) (int, error) {
	d := ix.data
	for j := i + 1; j < len(d); {
		switch c := d[j]; {
		case c == '"':
			ix.ends[i] = int32(j + 1)
			return j + 1, nil
		case c == '\\':
			if j+1 >= len(d) {
				return 0, invalid(j, "unterminated escape")
			}
			switch d[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if j+6 > len(d) || !isHex(d[j+2]) || !isHex(d[j+3]) || !isHex(d[j+4]) || !isHex(d[j+5]) {
					return 0, invalid(j, `\u needs four hex digits`)
				}
				j += 6
			default:
				return 0, invalid(j, fmt.Sprintf("bad escape \\%c", d[j+1]))
			}
		case c < 0x20:
			return 0, invalid(j, "control character in a string")
		default:
			j++
		}
	}
	return 0, invalid(len(d), "unterminated string")
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func (ix *indexer) literal(i int, lit string) (int, error) {
	d := ix.data
	if len(d)-i < len(lit) || string(d[i:i+len(lit)]) != lit {
		return 0, invalid(i, "bad literal, "+lit+" was expected")
	}
	return i + len(lit), nil
}

// number parses -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
func (ix *indexer) number(i int) (int, error) {
	d := ix.data
	j := i
	if d[j] == '-' {
		j++
	}
	switch {
	case j < len(d) && d[j] == '0':
		j++
	case j < len(d) && d[j] >= '1' && d[j] <= '9':
		j = digits(d, j)
	default:
		return 0, invalid(j, "a digit was expected in a number")
	}
	if j < len(d) && d[j] == '.' {
		k := digits(d, j+1)
		if k == j+1 {
			return 0, invalid(k, "a digit was expected after the decimal point")
		}
		j = k
	}
	if j < len(d) && (d[j] == 'e' || d[j] == 'E') {
		j++
		if j < len(d) && (d[j] == '+' || d[j] == '-') {
			j++
		}
		k := digits(d, j)
		if k == j {
			return 0, invalid(k, "a digit was expected in an exponent")
		}
		j = k
	}
	return j, nil
}

func digits(d []byte, j int) int {
	for j < len(d) && d[j] >= '0' && d[j] <= '9' {
		j++
	}
	return j
}

// valueEnd returns the end of the value starting at j of an indexed text.
func valueEnd(d []byte, ends []int32, j int) int {
	switch d[j] {
	case '{', '[', '"':
		return int(ends[j])
	case 't', 'n':
		return j + 4
	case 'f':
		return j + 5
	}
	k := j + 1
	for k < len(d) {
		switch d[k] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return k
		}
		k++
	}
	return k
}
