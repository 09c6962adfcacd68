package testenv

import (
	"context"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// DumpDOM loads url in headless Chromium (Debian's chromium, which .ci/run
// installs) and returns the DOM once the page's scripts have run for up to
// budget of virtual time (single-page apps fetch their data after load). A
// missing chromium fails the test.
func DumpDOM(t testing.TB, url string, budget time.Duration) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("testenv: chromium is required for browser tests (apt-get install chromium): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
		"--user-data-dir="+t.TempDir(),
		"--virtual-time-budget="+strconv.FormatInt(budget.Milliseconds(), 10),
		"--dump-dom", url)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("testenv: chromium --dump-dom %s: %v", url, err)
	}
	return string(out)
}
