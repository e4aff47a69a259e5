package jsonshape

import (
	"reflect"
	"slices"
	"strings"
)

// Members lists the JSON members of struct type typ, embedded structs flattened, sorted;
// "name?" marks a member encoding/json may leave out (omitempty, omitzero). nullable
// lists the pointer fields without either, which encoding/json writes as null when nil.
func Members(typ reflect.Type) (members, nullable []string) {
	for f := range typ.Fields() {
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			m, n := Members(f.Type)
			members, nullable = append(members, m...), append(nullable, n...)
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero") {
			name += "?"
		} else if f.Type.Kind() == reflect.Pointer {
			nullable = append(nullable, typ.Name()+"."+f.Name)
		}
		members = append(members, name)
	}
	slices.Sort(members)
	return members, nullable
}
