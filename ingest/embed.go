package ingest

import (
	"embed"
	"io/fs"
	"path"
)

// matchFiles holds the Cricsheet files of ingest/matches (see its README for the ODC-By
// attribution). A go:embed variable must live at package level; it is read-only.
//
//go:embed matches/*.json matches/README.md
var matchFiles embed.FS

// Embedded parses the embedded real matches, sorted by file name.
func Embedded() ([]*Match, error) {
	names, err := fs.Glob(matchFiles, "matches/*.json")
	if err != nil {
		return nil, err
	}
	ms := make([]*Match, 0, len(names))
	for _, name := range names {
		data, err := matchFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		m, err := ReadMatch(path.Base(name), data)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// EmbeddedFile returns the embedded Cricsheet file of the real match id (its file name
// in ingest/matches without .json).
func EmbeddedFile(id string) ([]byte, error) {
	return matchFiles.ReadFile("matches/" + id + ".json")
}
