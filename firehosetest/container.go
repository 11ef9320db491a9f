package firehosetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"
)

// ContainerOptions configure StartContainer, on top of Options.
type ContainerOptions struct {
	Options
	// Image runs Firehose from this image (its entrypoint the firehose
	// binary, as the project's Dockerfile builds). Empty: an image built
	// FROM scratch around a static binary compiled from this module's
	// source, once per test binary.
	Image string
}

// StartContainer is Start with Firehose in a container, started with
// testcontainers-go: the processor, the connectors and the listener run in
// one container, and, unless Options.Broker names the suite's own Kafka, the
// broker (firehose broker) in a second. Containers use the host's network
// (loopback), and Out is mounted at the same path inside, so the returned
// Firehose is used exactly as Start's.
//
// It needs a container engine that testcontainers-go finds (DOCKER_HOST);
// with none it skips the test and says why. Set
// TESTCONTAINERS_RYUK_DISABLED=true where the engine cannot run the Ryuk
// reaper (podman without a registry): the containers are removed when the
// test ends either way.
func StartContainer(t *testing.T, o ContainerOptions) *Firehose {
	t.Helper()
	testcontainers.SkipIfProviderIsNotHealthy(t)
	ctx := context.Background()
	image := o.Image
	if image == "" {
		var err error
		if image, err = buildImage(ctx); err != nil {
			t.Fatalf("firehosetest: build the image: %v", err)
		}
	}
	user := strconv.Itoa(os.Getuid()) + ":" + strconv.Itoa(os.Getgid())
	run := func(name string, mounts []string, args ...string) {
		t.Helper()
		c, err := testcontainers.Run(ctx, image,
			testcontainers.WithCmd(args...),
			testcontainers.WithConfigModifier(func(c *container.Config) { c.User = user }),
			testcontainers.WithHostConfigModifier(func(h *container.HostConfig) {
				h.NetworkMode = "host"
				h.Binds = mounts
			}),
			testcontainers.WithLogConsumers(&logTo{t: t, name: name}),
		)
		testcontainers.CleanupContainer(t, c)
		if err != nil {
			t.Fatalf("firehosetest: start %s container: %v", name, err)
		}
	}

	f := &Firehose{Broker: o.Broker, Out: t.TempDir()}
	if f.Broker == "" {
		port := freePort(t)
		f.Broker = "127.0.0.1:" + port
		run("broker", nil, "broker", "--host", "127.0.0.1", "--port", port)
		waitTCP(t, f.Broker)
	}
	port := freePort(t)
	doc, env := f.config(t, o.Options, "127.0.0.1:"+port)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "firehose.yaml"), []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	f.applyTopology(t)
	args := []string{"run", "-c", "/etc/firehose/firehose.yaml", "--role", "all", "--shutdown-timeout", "10s"}
	envArgs := make([]string, 0, len(env))
	for k, v := range env {
		envArgs = append(envArgs, k+"="+v)
	}
	c, err := testcontainers.Run(ctx, image,
		testcontainers.WithCmd(args...),
		testcontainers.WithConfigModifier(func(c *container.Config) { c.User = user; c.Env = envArgs }),
		testcontainers.WithHostConfigModifier(func(h *container.HostConfig) {
			h.NetworkMode = "host"
			h.Binds = []string{dir + ":/etc/firehose:ro", f.Out + ":" + f.Out}
		}),
		testcontainers.WithLogConsumers(&logTo{t: t, name: "firehose"}),
	)
	testcontainers.CleanupContainer(t, c)
	if err != nil {
		t.Fatalf("firehosetest: start firehose container: %v", err)
	}
	f.HTTP = "http://127.0.0.1:" + port
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get(f.HTTP + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return f
			}
		}
		if st, serr := c.State(ctx); serr == nil && !st.Running {
			t.Fatalf("firehosetest: the firehose container stopped at start (exit %d); its log is above", st.ExitCode)
		}
		if time.Now().After(deadline) {
			t.Fatalf("firehosetest: firehose in its container not ready after 90s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logTo copies a container's log into the test's, where a failure shows it.
type logTo struct {
	t    *testing.T
	name string
}

func (l *logTo) Accept(lg testcontainers.Log) {
	l.t.Logf("%s: %s", l.name, strings.TrimRight(string(lg.Content), "\n"))
}

// freePort is a loopback port free now, for a container on the host's
// network to listen on.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func waitTCP(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("firehosetest: nothing listens on %s after 60s: %v", addr, err)
		}
	}
}

var built struct {
	once  sync.Once
	image string
	err   error
}

// buildImage builds, once per test binary, an image FROM scratch around a
// static firehose binary compiled from the source of the module in use:
// no registry is needed. The tag names the binary's hash, so an unchanged
// binary reuses the image.
func buildImage(ctx context.Context) (string, error) {
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "firehosetest-image-")
		if err != nil {
			built.err = err
			return
		}
		defer os.RemoveAll(dir)
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(dir, "firehose"), "github.com/firehose/firehose/cmd/firehose")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		bin, err := os.Open(filepath.Join(dir, "firehose"))
		if err != nil {
			built.err = err
			return
		}
		h := sha256.New()
		_, err = io.Copy(h, bin)
		bin.Close()
		if err != nil {
			built.err = err
			return
		}
		tag := hex.EncodeToString(h.Sum(nil))[:16]
		df := "FROM scratch\nCOPY firehose /firehose\nENTRYPOINT [\"/firehose\"]\n"
		if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte(df), 0o644); err != nil {
			built.err = err
			return
		}
		req := testcontainers.GenericContainerRequest{ContainerRequest: testcontainers.ContainerRequest{
			FromDockerfile: testcontainers.FromDockerfile{Context: dir, Dockerfile: "Containerfile", Repo: "localhost/firehosetest", Tag: tag, KeepImage: true},
		}}
		provider, err := req.ProviderType.GetProvider()
		if err != nil {
			built.err = err
			return
		}
		defer provider.Close()
		p, ok := provider.(*testcontainers.DockerProvider)
		if !ok {
			built.err = errors.New("firehosetest needs a Docker-compatible provider")
			return
		}
		built.image, built.err = p.BuildImage(ctx, &req)
	})
	return built.image, built.err
}
