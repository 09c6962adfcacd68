package workers_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/workers"
)

// Every task type the catalogue names has a handler, and the README's task
// catalogue says what jobs.Catalogue does: a type added, moved to another
// queue or given other retries shows up here, not in production.
func TestCatalogueIsRegisteredAndDocumented(t *testing.T) {
	t.Parallel()
	mux := asynq.NewServeMux()
	workers.Register(mux, &workers.Deps{})
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range jobs.Catalogue {
		if _, pattern := mux.Handler(asynq.NewTask(spec.Type, nil)); pattern != spec.Type {
			t.Errorf("%s: no handler registered (pattern %q)", spec.Type, pattern)
		}
		row := fmt.Sprintf("| `%s` | %s | %d | %s |", spec.Type, spec.Queue, spec.MaxRetry, shortDuration(spec.Timeout.String()))
		if !strings.Contains(string(readme), row) {
			t.Errorf("README's task catalogue lacks the row %q", row)
		}
	}
	_, section, _ := strings.Cut(string(readme), "\n## Task catalogue\n")
	section, _, _ = strings.Cut(section, "\n## ")
	if n := strings.Count(section, "\n| `"); n != len(jobs.Catalogue) {
		t.Errorf("README's task catalogue has %d rows, jobs.Catalogue %d types", n, len(jobs.Catalogue))
	}
}

// shortDuration writes 2h0m0s as 2h and 30m0s as 30m, as the README does.
func shortDuration(s string) string {
	s = strings.TrimSuffix(s, "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
