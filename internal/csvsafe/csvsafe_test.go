package csvsafe

import (
	"bytes"
	"encoding/csv"
	"testing"
)

func TestCellsThatLookLikeFormulasAreNeutralised(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`=HYPERLINK("http://evil.example","x")`: `'=HYPERLINK("http://evil.example","x")`,
		"+1":                                    "'+1",
		"-2+3":                                  "'-2+3",
		"@SUM(A1)":                              "'@SUM(A1)",
		"\t=1":                                  "'\t=1",
		"\r=1":                                  "'\r=1",
		"-123":                                  "'-123",
		"jane@x.com":                            "jane@x.com",
		"145722":                                "145722",
		"O'Neil":                                "O'Neil",
		"":                                      "",
		"a=b":                                   "a=b",
	} {
		if got := Cell(in); got != want {
			t.Errorf("Cell(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriterOutputParses(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	rows := [][]string{{"row", "value"}, {"2", "=1+1"}, {"3", "a,\"b\"\nc"}}
	for _, r := range rows {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	got, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got[1][1] != "'=1+1" || got[2][1] != "a,\"b\"\nc" {
		t.Fatalf("round trip: %q", got)
	}
}

func TestUncellReadsBackWhatCellWrote(t *testing.T) {
	t.Parallel()
	for _, v := range []string{`=HYPERLINK("x")`, "+1", "-123", "@SUM(A1)", "\t=1", "\r=1", "'quoted'", "O'Neil", "'", "", "145722", "'-1"} {
		if got := Uncell(Cell(v)); got != v {
			t.Errorf("Uncell(Cell(%q)) = %q", v, got)
		}
	}
	if got := Uncell("'hello"); got != "'hello" {
		t.Errorf("a quote before plain text is the value's own: %q", got)
	}
}
