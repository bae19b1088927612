package mcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"sync"
	"time"

	"github.com/tidwall/gjson"
)

// Restart backoff for a stdio upstream that exits: it doubles from
// restartMin up to restartMax, and starts over once a process has run for
// restartReset.
const (
	restartMin   = 100 * time.Millisecond
	restartMax   = 10 * time.Second
	restartReset = 30 * time.Second
	stopGrace    = time.Second
)

// lookPath finds an upstream command, honouring a PATH set in its env.
func lookPath(name string, env map[string]string) (string, error) {
	if p, ok := env["PATH"]; ok {
		old := os.Getenv("PATH")
		if p != old {
			// exec.LookPath reads the process's PATH; search the
			// upstream's PATH by hand instead of changing ours.
			for _, dir := range filepathList(p) {
				cand := dir + string(os.PathSeparator) + name
				if st, err := os.Stat(cand); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
					return cand, nil
				}
			}
		}
	}
	return exec.LookPath(name)
}

// stdioConn is a supervised child process speaking newline-delimited
// JSON-RPC on its stdin and stdout. Its stderr goes to Caracal's stderr.
type stdioConn struct {
	spec   UpstreamSpec
	path   string
	ev     connEvents
	max    int64
	stderr io.Writer
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	wmu   sync.Mutex // serialises writes to stdin
	mu    sync.Mutex
	cmd   *exec.Cmd
	stdin io.WriteCloser
	stop  bool
}

func startStdio(ctx context.Context, spec UpstreamSpec, ev connEvents, max int64, stderr io.Writer, log *slog.Logger) (*stdioConn, error) {
	path, err := lookPath(spec.Command[0], spec.Env)
	if err != nil {
		return nil, fmt.Errorf("upstream command %q not found: %w", spec.Command[0], err)
	}
	cctx, cancel := context.WithCancel(ctx)
	c := &stdioConn{spec: spec, path: path, ev: ev, max: max, stderr: stderr, log: log.With("upstream_command", spec.Command[0]), ctx: cctx, cancel: cancel, done: make(chan struct{})}
	stdout, err := c.start()
	if err != nil {
		cancel()
		return nil, err
	}
	go c.supervise(stdout)
	spec.upstreamStarted()
	return c, nil
}

func (c *stdioConn) start() (io.ReadCloser, error) {
	cmd := exec.Command(c.path, c.spec.Command[1:]...)
	cmd.Dir = c.spec.Dir
	cmd.Stderr = c.stderr
	if len(c.spec.Env) > 0 {
		keys := make([]string, 0, len(c.spec.Env))
		for k := range c.spec.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		cmd.Env = os.Environ()
		for _, k := range keys {
			cmd.Env = append(cmd.Env, k+"="+c.spec.Env[k])
		}
	}
	setProcessGroup(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", c.spec.Command[0], err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", c.spec.Command[0], err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start upstream %q: %w", c.spec.Command[0], err)
	}
	c.mu.Lock()
	c.cmd, c.stdin = cmd, stdin
	c.mu.Unlock()
	return stdout, nil
}

func (c *stdioConn) supervise(stdout io.ReadCloser) {
	defer close(c.done)
	backoff := restartMin
	for {
		started := time.Now()
		c.readAll(stdout)
		c.mu.Lock()
		cmd := c.cmd
		c.stdin = nil
		c.mu.Unlock()
		werr := cmd.Wait()
		c.mu.Lock()
		stop := c.stop
		c.mu.Unlock()
		if stop {
			return
		}
		if werr == nil {
			werr = errors.New("exited with status 0")
		}
		c.ev.down(fmt.Errorf("upstream %q: %w", c.spec.Command[0], werr))
		c.spec.upstreamDown()
		if time.Since(started) > restartReset {
			backoff = restartMin
		}
		for {
			select {
			case <-time.After(backoff):
			case <-c.ctx.Done():
				return
			}
			backoff = min(backoff*2, restartMax)
			c.mu.Lock()
			stop = c.stop
			c.mu.Unlock()
			if stop {
				return
			}
			var err error
			if stdout, err = c.start(); err == nil {
				break
			}
			c.log.Error("restarting upstream failed", "err", err, "retry_in", backoff)
		}
		c.log.Info("upstream restarted")
		c.spec.upstreamRestarted()
		c.ev.restarted()
	}
}

func (c *stdioConn) readAll(stdout io.Reader) {
	r := newLineReader(stdout, c.max)
	for {
		line, err := r.next()
		if err == nil {
			c.ev.message(line)
			continue
		}
		var tl *TooLargeError
		if errors.As(err, &tl) {
			c.log.Error("message from upstream too large", "size", tl.Size, "max", tl.Max)
			if id := gjson.GetBytes(tl.Prefix, "id"); id.Exists() && id.Type != gjson.Null {
				c.ev.failed(id.Raw, fmt.Errorf("its response exceeds the maximum message size: %w", tl), true)
			}
			continue
		}
		return
	}
}

func (c *stdioConn) send(_ context.Context, msg []byte) error {
	c.mu.Lock()
	stdin := c.stdin
	c.mu.Unlock()
	if stdin == nil {
		return errUpstreamDown
	}
	line := frameLine(msg)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := stdin.Write(line); err != nil {
		return fmt.Errorf("%w: %w", errUpstreamDown, err)
	}
	return nil
}

// close ends the child: stdin is closed (the MCP stdio shutdown), then
// after a grace period the process group is killed.
func (c *stdioConn) close() error {
	c.mu.Lock()
	if c.stop {
		c.mu.Unlock()
		<-c.done
		return nil
	}
	c.stop = true
	cmd, stdin := c.cmd, c.stdin
	c.mu.Unlock()
	c.cancel()
	if stdin != nil {
		_ = stdin.Close()
	}
	select {
	case <-c.done:
		return nil
	case <-time.After(stopGrace):
	}
	killProcess(cmd)
	<-c.done
	return nil
}
