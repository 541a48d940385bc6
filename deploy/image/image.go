// Package image assembles the tokenizer's container image from scratch, without a
// Docker engine: a static binary, CA certificates, a passwd entry for the non-root user
// 65532 and an OCI config, written as one tar that holds an OCI image layout (for
// skopeo, podman, crane, containerd) and a docker-load manifest (for docker and kind).
package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Where things are in the image, and who runs it.
const (
	BinaryPath   = "/usr/local/bin/tokenizer"
	CABundlePath = "/etc/ssl/certs/ca-certificates.crt"
	HomeDir      = "/home/nonroot"
	UID          = 65532
	User         = "65532:65532"
)

// ExposedPorts are the service's ports: gRPC, REST, admin (metrics and health).
var ExposedPorts = []string{"9090/tcp", "8080/tcp", "9102/tcp"}

// Options describe one image.
type Options struct {
	Binary   string    // a static linux binary (CGO_ENABLED=0)
	CABundle string    // PEM file copied to CABundlePath
	Version  string    // org.opencontainers.image.version
	Revision string    // org.opencontainers.image.revision (VCS commit)
	Source   string    // org.opencontainers.image.source (repository URL)
	Created  time.Time // every timestamp in the image: fixed, so builds are reproducible
	Arch     string    // GOARCH of the binary; default: this machine's
}

// Build assembles the image: a base layer (passwd, group, CA bundle, home, /tmp) and an
// application layer (the binary).
func Build(o Options) (v1.Image, error) {
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	ca, err := os.ReadFile(o.CABundle)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("binary: %w", err)
	}
	base, err := layer(o.Created, baseEntries(ca))
	if err != nil {
		return nil, err
	}
	app, err := layer(o.Created, []entry{dir("/usr", 0o755, 0), dir("/usr/local", 0o755, 0),
		dir("/usr/local/bin", 0o755, 0), file(BinaryPath, 0o755, 0, bin)})
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	created := v1.Time{Time: o.Created}
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{Created: created, CreatedBy: "passwd, group, CA certificates, /home/nonroot, /tmp", Comment: "tokenizer image builder"}},
		mutate.Addendum{Layer: app, MediaType: types.OCILayer, History: v1.History{Created: created, CreatedBy: "tokenizer " + o.Version, Comment: "tokenizer image builder"}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", o.Arch, created
	cf.Config = config(o)
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, labels(o)).(v1.Image), nil
}

func labels(o Options) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":    "tokenizer",
		"org.opencontainers.image.source":   o.Source,
		"org.opencontainers.image.revision": o.Revision,
		"org.opencontainers.image.version":  o.Version,
		"org.opencontainers.image.created":  o.Created.UTC().Format(time.RFC3339),
	}
}

func config(o Options) v1.Config {
	ports := map[string]struct{}{}
	for _, p := range ExposedPorts {
		ports[p] = struct{}{}
	}
	return v1.Config{
		Entrypoint:   []string{BinaryPath},
		Cmd:          []string{"serve"},
		User:         User,
		WorkingDir:   HomeDir,
		ExposedPorts: ports,
		Env:          []string{"PATH=/usr/local/bin", "SSL_CERT_FILE=" + CABundlePath, "HOME=" + HomeDir},
		Labels:       labels(o),
	}
}

// entry is one file or directory of a layer.
type entry struct {
	hdr  tar.Header
	body []byte
}

func dir(name string, mode int64, owner int) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name[1:] + "/", Mode: mode, Uid: owner, Gid: owner}}
}

func file(name string, mode int64, owner int, body []byte) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name[1:], Mode: mode, Uid: owner, Gid: owner, Size: int64(len(body))}, body: body}
}

func baseEntries(ca []byte) []entry {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:%s:/sbin/nologin\n", UID, UID, HomeDir)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", UID)
	return []entry{
		dir("/etc", 0o755, 0),
		file("/etc/passwd", 0o644, 0, []byte(passwd)),
		file("/etc/group", 0o644, 0, []byte(group)),
		// Go's resolver reads this: files first, then DNS, as glibc would.
		file("/etc/nsswitch.conf", 0o644, 0, []byte("hosts: files dns\n")),
		dir("/etc/ssl", 0o755, 0),
		dir("/etc/ssl/certs", 0o755, 0),
		file(CABundlePath, 0o644, 0, ca),
		dir("/home", 0o755, 0),
		dir(HomeDir, 0o700, UID),
		dir("/root", 0o700, 0),
		dir("/tmp", 0o1777, 0),
	}
}

// layer writes entries into an uncompressed tar with fixed timestamps and numeric
// owners; the layer is gzip-compressed when written.
func layer(mtime time.Time, entries []entry) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.ModTime, h.Format = mtime, tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	raw := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.OCILayer))
}
