package report

import "strings"

// TableHead is the head of a Markdown table: the row of column names and the separator
// row, one cell for each column, so that the two cannot disagree. A `|` in a name is
// escaped.
func TableHead(cols ...string) string {
	var b strings.Builder
	for _, c := range cols {
		b.WriteString("| ")
		b.WriteString(strings.ReplaceAll(c, "|", `\|`))
		b.WriteString(" ")
	}
	b.WriteString("|\n")
	b.WriteString(strings.Repeat("|---", len(cols)))
	b.WriteString("|\n")
	return b.String()
}
