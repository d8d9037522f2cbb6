package main

// A minimal Chrome DevTools protocol client over --remote-debugging-pipe:
// the browser reads JSON messages, each ended by a NUL byte, from its fd 3
// and writes its answers and events to fd 4. No WebSocket needed.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

type cdpMessage struct {
	ID        int             `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Params    interface{}     `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

type browser struct {
	t       *testing.T
	cmd     *exec.Cmd
	out     *os.File // our end of the browser's fd 3
	mu      sync.Mutex
	nextID  int
	pending map[int]chan cdpMessage
	closed  chan struct{} // the browser's fd 4 reached its end
	session string        // the page's session (flat mode)
}

// findChromium returns the browser to drive: $MG_CHROMIUM, or chromium (the
// Debian package) on the PATH.
func findChromium() string {
	if p := os.Getenv("MG_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// startBrowser launches headless Chromium in its own process group, attached
// to one new page; the test's cleanup closes it (killing the group if it does
// not go).
func startBrowser(t *testing.T, exe string, width, height int) *browser {
	toBrowser, ourOut, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ourIn, fromBrowser, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--remote-debugging-pipe", "--user-data-dir="+filepath.Join(t.TempDir(), "profile"),
		"--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--mute-audio", "--hide-scrollbars", "--disable-breakpad", "--disable-crash-reporter", fmt.Sprintf("--window-size=%d,%d", width, height), "about:blank")
	cmd.ExtraFiles = []*os.File{toBrowser, fromBrowser} // fds 3 and 4
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	toBrowser.Close()
	fromBrowser.Close()
	b := &browser{t: t, cmd: cmd, out: ourOut, pending: map[int]chan cdpMessage{}, closed: make(chan struct{})}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		b.call("", "Browser.close", nil, nil) // errors: it may be gone already
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // helpers left behind
		ourOut.Close()
		ourIn.Close()
		if t.Failed() {
			t.Logf("chromium stderr:\n%s", stderr.String())
		}
	})
	go b.read(ourIn)

	var target struct {
		TargetID string `json:"targetId"`
	}
	b.must("", "Target.createTarget", map[string]interface{}{"url": "about:blank"}, &target)
	var attached struct {
		SessionID string `json:"sessionId"`
	}
	b.must("", "Target.attachToTarget", map[string]interface{}{"targetId": target.TargetID, "flatten": true}, &attached)
	b.session = attached.SessionID
	b.must(b.session, "Page.enable", nil, nil)
	b.must(b.session, "Runtime.enable", nil, nil)
	b.must(b.session, "Emulation.setDeviceMetricsOverride", map[string]interface{}{
		"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}, nil)
	return b
}

// read delivers answers to their callers and logs the page's console
// messages and uncaught exceptions.
func (b *browser) read(r *os.File) {
	defer close(b.closed)
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		raw, err := br.ReadBytes(0)
		if err != nil {
			return
		}
		var m cdpMessage
		var params json.RawMessage
		m.Params = &params
		if json.Unmarshal(raw[:len(raw)-1], &m) != nil {
			continue
		}
		if m.ID != 0 {
			b.mu.Lock()
			ch := b.pending[m.ID]
			delete(b.pending, m.ID)
			b.mu.Unlock()
			if ch != nil {
				ch <- m
			}
			continue
		}
		switch m.Method {
		case "Runtime.consoleAPICalled", "Runtime.exceptionThrown", "Log.entryAdded":
			b.t.Logf("page: %s %s", m.Method, params)
		}
	}
}

// call sends one command and waits (20 s at most) for its answer.
func (b *browser) call(session, method string, params, result interface{}) error {
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	ch := make(chan cdpMessage, 1)
	b.pending[id] = ch
	b.mu.Unlock()
	msg, err := json.Marshal(cdpMessage{ID: id, Method: method, SessionID: session, Params: params})
	if err != nil {
		return err
	}
	if _, err := b.out.Write(append(msg, 0)); err != nil {
		return err
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, m.Error.Message, m.Error.Code)
		}
		if result != nil {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	case <-b.closed:
		return fmt.Errorf("%s: the browser went away", method)
	case <-time.After(20 * time.Second):
		return fmt.Errorf("%s: no answer in 20 s", method)
	}
}

func (b *browser) must(session, method string, params, result interface{}) {
	b.t.Helper()
	if err := b.call(session, method, params, result); err != nil {
		b.t.Fatal(err)
	}
}

// eval evaluates a JavaScript expression in the page (awaiting a promise)
// and stores its JSON value in result.
func (b *browser) eval(expr string, result interface{}) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	err := b.call(b.session, "Runtime.evaluate", map[string]interface{}{
		"expression": expr, "returnByValue": true, "awaitPromise": true}, &r)
	if err != nil {
		return err
	}
	if r.Exception != nil {
		return fmt.Errorf("%s: %s %s", expr, r.Exception.Text, r.Exception.Exception.Description)
	}
	if result != nil && len(r.Result.Value) > 0 {
		return json.Unmarshal(r.Result.Value, result)
	}
	return nil
}

func (b *browser) mustEval(expr string, result interface{}) {
	b.t.Helper()
	if err := b.eval(expr, result); err != nil {
		b.t.Fatal(err)
	}
}

// waitFor polls a JavaScript expression until it is true.
func (b *browser) waitFor(what, expr string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var ok bool
		err := b.eval("Boolean("+expr+")", &ok)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			var status string
			b.eval(`document.getElementById("status").textContent + " | " + document.getElementById("imginfo").textContent`, &status)
			b.t.Fatalf("waited %v for %s (%v); page says %q", timeout, what, err, status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lockedBuffer collects a child's stderr.
type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) < 1<<20 {
		l.buf = append(l.buf, p...)
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}
