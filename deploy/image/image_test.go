package image_test

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/deploy/image"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
	"github.com/phivault/tokenizer/internal/testutil/pkitest"
)

// buildStatic builds the tokenizer as `make image` does: CGO off, trimmed paths, the
// version and commit linked in.
func buildStatic(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tokenizer")
	ldflags := "-s -w -X github.com/phivault/tokenizer/internal/cli.buildVersion=v0.0.0-imagetest" +
		" -X github.com/phivault/tokenizer/internal/cli.buildCommit=0123456789abcdef"
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", bin, "./cmd/tokenizer")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	f, err := elf.Open(bin)
	require.NoError(t, err)
	defer f.Close()
	for _, p := range f.Progs {
		require.NotEqual(t, elf.PT_INTERP, p.Type, "the binary is static: no dynamic loader")
	}
	return bin
}

// chrootCmd runs name inside root as the image's user, with the image's environment,
// the way a container runtime would (minus namespaces).
func chrootCmd(root string, env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(image.BinaryPath, args...)
	cmd.Path = image.BinaryPath
	cmd.Dir = "/"
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: &syscall.Credential{Uid: image.UID, Gid: image.UID}}
	return cmd
}

// TestImage builds the image, writes and reads back the archive, checks the config,
// extracts the root filesystem and runs `tokenizer version`, then `tokenizer serve`,
// from it under chroot as user 65532.
func TestImage(t *testing.T) {
	require.Zero(t, os.Geteuid(), "chroot needs root (CI and these machines run tests as root)")
	dir := t.TempDir()
	ca := pkitest.NewCA(t, "image test CA")
	bundle := pkitest.Write(t, dir, "ca.pem", ca.PEM)
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	img, err := image.Build(image.Options{
		Binary: buildStatic(t), CABundle: bundle, Version: "v0.0.0-imagetest", Revision: "0123456789abcdef",
		Source: "https://github.com/phivault/tokenizer", Created: created,
	})
	require.NoError(t, err)
	again, err := image.Build(image.Options{
		Binary: buildStatic(t), CABundle: bundle, Version: "v0.0.0-imagetest", Revision: "0123456789abcdef",
		Source: "https://github.com/phivault/tokenizer", Created: created,
	})
	require.NoError(t, err)
	d1, err := img.Digest()
	require.NoError(t, err)
	d2, err := again.Digest()
	require.NoError(t, err)
	assert.Equal(t, d1, d2, "the same inputs give the same image")
	archive := filepath.Join(dir, "tokenizer-image.tar")
	digest, err := image.WriteArchive(img, "tokenizer:test", archive)
	require.NoError(t, err)

	unpacked := filepath.Join(dir, "archive")
	got, name, err := image.ReadArchive(archive, unpacked)
	require.NoError(t, err)
	assert.Equal(t, "docker.io/library/tokenizer:test", name)
	gotDigest, err := got.Digest()
	require.NoError(t, err)
	assert.Equal(t, digest, gotDigest)
	checkDockerManifest(t, unpacked)

	mt, err := got.MediaType()
	require.NoError(t, err)
	assert.Equal(t, types.OCIManifestSchema1, mt)
	cf, err := got.ConfigFile()
	require.NoError(t, err)
	assert.Equal(t, "linux", cf.OS)
	assert.Equal(t, runtime.GOARCH, cf.Architecture)
	assert.Equal(t, created, cf.Created.Time.UTC())
	assert.Equal(t, []string{image.BinaryPath}, cf.Config.Entrypoint)
	assert.Equal(t, []string{"serve"}, cf.Config.Cmd)
	assert.Equal(t, "65532:65532", cf.Config.User)
	for _, p := range []string{"9090/tcp", "8080/tcp", "9102/tcp"} {
		assert.Contains(t, cf.Config.ExposedPorts, p)
	}
	assert.Equal(t, "https://github.com/phivault/tokenizer", cf.Config.Labels["org.opencontainers.image.source"])
	assert.Equal(t, "0123456789abcdef", cf.Config.Labels["org.opencontainers.image.revision"])
	assert.Equal(t, "v0.0.0-imagetest", cf.Config.Labels["org.opencontainers.image.version"])

	root := filepath.Join(dir, "rootfs")
	rc := mutate.Extract(got)
	require.NoError(t, image.Untar(rc, root))
	rc.Close()
	checkRootFS(t, root, ca.PEM)

	out, err := chrootCmd(root, cf.Config.Env, "version").CombinedOutput()
	require.NoError(t, err, "tokenizer version in the image:\n%s", out)
	assert.Contains(t, string(out), "tokenizer v0.0.0-imagetest")
	assert.Contains(t, string(out), "commit: 0123456789abcdef")
	assert.Contains(t, string(out), "go: "+runtime.Version())

	serveFromImage(t, root, cf.Config.Env)
}

func checkDockerManifest(t *testing.T, dir string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	require.NoError(t, err)
	var m []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	require.NoError(t, json.Unmarshal(raw, &m))
	require.Len(t, m, 1)
	assert.Equal(t, []string{"tokenizer:test"}, m[0].RepoTags)
	assert.Len(t, m[0].Layers, 2)
	for _, p := range append([]string{m[0].Config}, m[0].Layers...) {
		assert.FileExists(t, filepath.Join(dir, p), "docker manifest points at a blob")
	}
}

func checkRootFS(t *testing.T, root string, caPEM []byte) {
	t.Helper()
	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	require.NoError(t, err)
	assert.Contains(t, string(passwd), "nonroot:x:65532:65532:")
	ca, err := os.ReadFile(filepath.Join(root, image.CABundlePath))
	require.NoError(t, err)
	assert.Equal(t, caPEM, ca)
	fi, err := os.Stat(filepath.Join(root, image.HomeDir))
	require.NoError(t, err)
	assert.EqualValues(t, image.UID, fi.Sys().(*syscall.Stat_t).Uid, "home belongs to the user")
	for _, shell := range []string{"bin/sh", "bin/bash", "usr/bin/sh"} {
		assert.NoFileExists(t, filepath.Join(root, shell), "no shell in the image")
	}
}

// serveFromImage starts `tokenizer serve --dev --insecure` from the extracted image
// against a fresh database, waits until /readyz answers 200, and stops it with SIGTERM.
func serveFromImage(t *testing.T, root string, env []string) {
	t.Helper()
	env = append(env, "TOKENIZER_DATABASE_URL="+pgtest.NewDatabase(t), "TOKENIZER_LOG_FORMAT=json")
	cmd := chrootCmd(root, env, "serve", "--dev", "--insecure", "--grpc-addr", "127.0.0.1:0",
		"--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--keys-local-file", "/tmp/dev-kek.hex")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	admin := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "listening" {
				admin <- m["admin"].(string)
			}
		}
	}()
	var addr string
	select {
	case addr = <-admin:
	case <-time.After(30 * time.Second):
		t.Fatal("the service in the image did not start listening")
	}
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 100*time.Millisecond, "ready from the image")
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	assert.NoError(t, cmd.Wait(), "clean exit on SIGTERM")
}
