package testenv

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
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

// Browser is a headless Chromium that a test drives through the DevTools
// protocol, for what --dump-dom cannot do: act on a page (evaluate script
// in it, move and click the mouse) and visit several pages in one profile,
// so that credentials given on one page are cached for the next. It talks
// over --remote-debugging-pipe (file descriptors 3 and 4): no port to
// find, no WebSocket client.
type Browser struct {
	t        testing.TB
	cmd      *exec.Cmd
	toChrome *os.File
	session  string

	mu      sync.Mutex
	nextID  int
	waiting map[int]chan cdpReply
	dead    chan struct{} // closed when Chromium's side of the pipe closes
}

type cdpReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// StartBrowser starts headless Chromium with a fresh profile and one blank
// tab; it is stopped when the test ends. A missing chromium fails the test.
func StartBrowser(t testing.TB) *Browser {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("testenv: chromium is required for browser tests (apt-get install chromium): %v", err)
	}
	cmdR, cmdW, err := os.Pipe() // the test writes commands, Chromium reads fd 3
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe() // Chromium writes replies and events to fd 4
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
		"--window-size=1280,1000", "--user-data-dir="+t.TempDir(),
		"--remote-debugging-pipe", "about:blank")
	cmd.ExtraFiles = []*os.File{cmdR, outW}
	// Its own process group, so that stopping it stops its renderers too
	// (they write to the profile that the test's cleanup removes).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start chromium: %v", err)
	}
	cmdR.Close()
	outW.Close()
	b := &Browser{t: t, cmd: cmd, toChrome: cmdW, waiting: map[int]chan cdpReply{}, dead: make(chan struct{})}
	go b.read(outR)
	t.Cleanup(func() {
		// Chromium's own shutdown, then the group, in case it hangs.
		raw, _ := json.Marshal(map[string]any{"id": -1, "method": "Browser.close"})
		_, _ = cmdW.Write(append(raw, 0))
		select {
		case <-b.dead:
		case <-time.After(10 * time.Second):
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		cmdW.Close()
		outR.Close()
	})

	var target struct {
		TargetID string `json:"targetId"`
	}
	b.call("", "Target.createTarget", map[string]any{"url": "about:blank"}, &target)
	var attached struct {
		SessionID string `json:"sessionId"`
	}
	b.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &attached)
	b.session = attached.SessionID
	b.call(b.session, "Page.enable", nil, nil)
	return b
}

// read delivers each reply to the call waiting for it; events are dropped.
// Messages on the pipe end with a NUL byte.
func (b *Browser) read(r io.Reader) {
	defer close(b.dead)
	br := bufio.NewReader(r)
	for {
		msg, err := br.ReadBytes(0)
		if err != nil {
			return
		}
		var m struct {
			ID int `json:"id"`
			cdpReply
		}
		if json.Unmarshal(msg[:len(msg)-1], &m) != nil || m.ID == 0 {
			continue
		}
		b.mu.Lock()
		ch := b.waiting[m.ID]
		delete(b.waiting, m.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- m.cdpReply
		}
	}
}

// call sends one DevTools command (to the browser when session is empty,
// else to the tab) and decodes its result into out.
func (b *Browser) call(session, method string, params any, out any) {
	b.t.Helper()
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	ch := make(chan cdpReply, 1)
	b.waiting[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	raw, _ := json.Marshal(msg)
	if _, err := b.toChrome.Write(append(raw, 0)); err != nil {
		b.t.Fatalf("testenv: chromium %s: %v", method, err)
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			b.t.Fatalf("testenv: chromium %s: %s (%d)", method, r.Error.Message, r.Error.Code)
		}
		if out != nil {
			if err := json.Unmarshal(r.Result, out); err != nil {
				b.t.Fatalf("testenv: chromium %s: %v", method, err)
			}
		}
	case <-b.dead:
		b.t.Fatalf("testenv: chromium %s: the browser went away", method)
	case <-time.After(30 * time.Second):
		b.t.Fatalf("testenv: chromium %s: no answer in 30s", method)
	}
}

// Navigate points the tab at url; it does not wait for the page to load
// (poll what the test needs with Eval).
func (b *Browser) Navigate(url string) {
	b.t.Helper()
	var res struct {
		ErrorText string `json:"errorText"`
	}
	b.call(b.session, "Page.navigate", map[string]any{"url": url}, &res)
	if res.ErrorText != "" {
		b.t.Fatalf("testenv: chromium navigate %s: %s", url, res.ErrorText)
	}
}

// Eval evaluates a JavaScript expression in the tab's page (awaiting it if
// it is a promise) and decodes its value into out (nil: ignore it). A
// script exception fails the test.
func (b *Browser) Eval(expr string, out any) {
	b.t.Helper()
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	b.call(b.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &res)
	if e := res.ExceptionDetails; e != nil {
		b.t.Fatalf("testenv: script %q: %s %s", expr, e.Text, e.Exception.Description)
	}
	if out != nil && len(res.Result.Value) > 0 {
		if err := json.Unmarshal(res.Result.Value, out); err != nil {
			b.t.Fatalf("testenv: script %q: %v", expr, err)
		}
	}
}

// MouseMove moves the mouse to (x, y) in CSS pixels of the viewport, as a
// user would: hover handlers run.
func (b *Browser) MouseMove(x, y float64) {
	b.t.Helper()
	b.call(b.session, "Input.dispatchMouseEvent", map[string]any{"type": "mouseMoved", "x": x, "y": y}, nil)
}

// Click presses and releases the left button at (x, y).
func (b *Browser) Click(x, y float64) {
	b.t.Helper()
	b.MouseMove(x, y)
	for _, typ := range []string{"mousePressed", "mouseReleased"} {
		b.call(b.session, "Input.dispatchMouseEvent", map[string]any{"type": typ, "x": x, "y": y, "button": "left", "clickCount": 1}, nil)
	}
}
