package e2e

import (
	"bytes"
	"debug/elf"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// repoRoot is the repository's top folder (the e2e tests run in e2e/).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// runMake runs make in the repository with args and returns its output.
func runMake(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("make", append([]string{"-s", "-C", repoRoot(t)}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// TestMakeDistStampsVersion builds the linux/amd64 release archive with a
// given version and checks the archive's checksum, that the binary is
// static, and that it prints the stamped version.
func TestMakeDistStampsVersion(t *testing.T) {
	dist := t.TempDir()
	const version = "v0.0.0-e2e.1"
	runMake(t, "dist", "PLATFORMS=linux/amd64", "DIST="+dist, "VERSION="+version)

	archive := "caracal_" + version + "_linux_amd64.tar.gz"
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil || !strings.Contains(string(sums), "  "+archive+"\n") {
		t.Fatalf("SHA256SUMS = %q, %v", sums, err)
	}
	check := exec.Command("sha256sum", "-c", "SHA256SUMS")
	check.Dir = dist
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	if out, err := exec.Command("tar", "-C", dist, "-xzf", filepath.Join(dist, archive)).CombinedOutput(); err != nil {
		t.Fatalf("untar: %v\n%s", err, out)
	}
	bin := filepath.Join(dist, strings.TrimSuffix(archive, ".tar.gz"), "caracal")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	libs, _ := f.ImportedLibraries()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a dynamic loader: not a static binary", bin)
		}
	}
	f.Close()
	if len(libs) > 0 {
		t.Errorf("%s links %v: not a static binary", bin, libs)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "caracal "+version+" ") || !strings.Contains(string(out), "linux/amd64") {
		t.Fatalf("caracal version = %q, %v; want the stamped %s", out, err, version)
	}
	// The build settings show a cgo-free build with embedded zone data.
	info, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil || !strings.Contains(string(info), "CGO_ENABLED=0") || !strings.Contains(string(info), "timetzdata") {
		t.Errorf("go version -m %s: %v\n%s", bin, err, info)
	}
}

// TestContainerImage builds the image with `make image` and runs it: it
// prints its version, and `caracal proxy` in it answers HTTP. Without a
// working docker or podman engine it skips loudly, and fails when CI is
// set: CI installs podman and runc (.ci/run), so there no engine means a
// broken environment.
func TestContainerImage(t *testing.T) {
	engine := strings.Fields(strings.TrimSpace(runMake(t, "container-engine")))
	if len(engine) == 0 {
		msg := "\n" + strings.Repeat("#", 72) + "\n# NO CONTAINER ENGINE: `docker info` and `podman info` both failed.\n" +
			"# The container image was NOT built or tested. Install podman and runc\n# (apt-get install -y podman runc) to run this test.\n" + strings.Repeat("#", 72)
		if os.Getenv("CI") != "" {
			t.Fatal("CI is set but there is no container engine:" + msg)
		}
		t.Skip(msg)
	}
	const version = "v0.0.0-e2e.image"
	image := fmt.Sprintf("localhost/caracal-e2e:%d", time.Now().UnixNano())
	runMake(t, "image", "VERSION="+version, "IMAGE="+image, "IMAGE_CONTEXT="+t.TempDir())
	t.Cleanup(func() { _ = exec.Command(engine[0], append(engine[1:], "rmi", "-f", image)...).Run() })
	run := func(args ...string) *exec.Cmd {
		full := append(append([]string{}, engine[1:]...), "run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--network", "host")
		return exec.Command(engine[0], append(full, args...)...)
	}
	out, err := run(image, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "caracal "+version+" ") {
		t.Fatalf("container version = %q, %v", out, err)
	}
	inspect, err := exec.Command(engine[0], append(engine[1:], "image", "inspect", "--format", "{{.Config.User}} {{.Config.Entrypoint}} {{.Config.Env}}", image)...).Output()
	if err != nil || !strings.HasPrefix(string(inspect), "65532:65532 [caracal]") || !strings.Contains(string(inspect), "CARACAL_HOME=/var/lib/caracal") {
		t.Errorf("image config = %q, %v", inspect, err)
	}

	// The home volume belongs to the image's user.
	home := t.TempDir()
	if err := os.Chown(home, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	vol := home + ":/var/lib/caracal"
	if out, err := run("-v", vol, image, "init").CombinedOutput(); err != nil {
		t.Fatalf("container init: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	name := fmt.Sprintf("caracal-e2e-%d", time.Now().UnixNano())
	proxy := run("--name", name, "-v", vol, "-e", "OPENAI_API_KEY=sk-fake-not-used", image, "proxy", "--listen", addr)
	var logs syncBuffer
	proxy.Stdout, proxy.Stderr = &logs, &logs
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command(engine[0], append(engine[1:], "stop", "-t", "10", name)...).Run()
		_ = proxy.Wait()
	})
	deadline := time.Now().Add(60 * time.Second)
	var resp *http.Response
	for {
		resp, err = http.Get("http://" + addr + "/healthz")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("caracal proxy in the container does not answer on %s: %v\n%s", addr, err, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("container: GET /healthz → %s, want 200\n%s", resp.Status, logs.String())
	}
	if !strings.Contains(logs.String(), "listening on") {
		t.Errorf("container proxy log:\n%s", logs.String())
	}
}
